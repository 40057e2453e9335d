"""``LatentReasoner``: the in-process :class:`~riad_agent.protocols.Reasoner` over a VLM adapter."""

from __future__ import annotations

import threading
import time
import weakref
from typing import TypeVar, cast

import torch

from riad_agent.errors import InvalidRequestError
from riad_agent.models.base import (
    BatchedVisionLanguageModel,
    PrefixState,
    PreparedPrompt,
    VisionLanguageModel,
)
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.reasoning.cancel import CancelToken, acquire, check, stop_check, token_of
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.decode import (
    Decoded,
    QuestionStem,
    decode_answer,
    decode_answers,
    question_stem,
)
from riad_agent.reasoning.injection import pool_prior
from riad_agent.reasoning.latent_loop import (
    LoopResult,
    LoopSetup,
    injected_refs,
    run_latent_loop,
    run_latent_loops,
)
from riad_agent.reasoning.option_meaning import contradicting_options
from riad_agent.reasoning.prompt import build_segments, preferred_option
from riad_agent.schemas import ReasoningTrace


class LatentReasoner:
    """Reason-IAD latent reasoning: prompt -> cached prefix -> latent loop with injection -> decode."""

    def __init__(self, vlm: VisionLanguageModel, config: LatentConfig | None = None) -> None:
        self.vlm = vlm
        self.config = config or LatentConfig()
        # One model, one inspection at a time: the adapter's forward hooks and caches are per call,
        # so concurrent callers (graph workers, triage) queue here instead of corrupting each other.
        self._lock = threading.Lock()
        self.model_id = vlm.model_id
        mean, self._embedding_rms = model_embedding_stats(vlm)
        if self.config.latent_init == "token":
            self._init_vector = vlm.embed_text(self.config.think_token).float().mean(0)
        else:
            self._init_vector = mean

    @property
    def takes_exemplar_images(self) -> bool:
        """Whether defect-exemplar crops go into its prompt (the builtin model takes none: skip loading them)."""
        return self.config.exemplar_images and bool(getattr(self.vlm, "takes_exemplar_images", False))

    def initial_latents(self, count: int) -> torch.Tensor:
        """L copies of the initial latent embedding (float32)."""
        return self._init_vector.to(self.vlm.device).expand(count, -1).clone()

    def setup(self, request: ReasoningInput) -> tuple[LoopSetup, dict[str, float]]:
        """Build the prompt, run the prefix once and collect what the loop needs."""
        prompt, timings = self._prompt(request)
        started = time.perf_counter()
        prefix = self.vlm.prefix_forward(prompt)
        timings["prefix_ms"] = (time.perf_counter() - started) * 1000.0
        return self._loop_setup(request, prefix), timings

    def _stem(self, request: ReasoningInput, prefix: PrefixState) -> QuestionStem | None:
        """The question's stem for debiased decoding (None when debiasing is off or impossible)."""
        if self.config.debias == "none":
            return None
        return question_stem(self.vlm, prefix, request.question, self.config.debias)

    def _prompt(self, request: ReasoningInput) -> tuple[PreparedPrompt, dict[str, float]]:
        """The request's prepared prompt (visual features in place) and its preparation time."""
        if request.image_score is not None and request.patch_prior is None:
            raise InvalidRequestError(
                "image_score needs patch_prior: pass the expert's prior map with its score, or neither"
            )
        started = time.perf_counter()
        config = self.config
        segments = build_segments(
            request,
            config.instruction,
            config.knowledge_chars,
            config.knowledge_hits,
            config.max_templates,
            exemplar_images=self.takes_exemplar_images,
        )
        prompt = self.vlm.prepare(segments)
        return prompt, {"prepare_ms": (time.perf_counter() - started) * 1000.0}

    def _loop_setup(self, request: ReasoningInput, prefix: PrefixState) -> LoopSetup:
        """Option tokens, the pooled prior and the initial latents of one request."""
        config = self.config
        option_ids = self.vlm.option_token_ids(list(request.question.options))
        missing = [letter for letter, ids in option_ids.items() if not ids]
        if missing:
            raise InvalidRequestError(
                f"option letters {', '.join(missing)} are not single tokens for {self.model_id}"
            )
        span = prefix.prompt.query_span
        prior = None
        if request.patch_prior is not None:
            try:
                prior = pool_prior(request.patch_prior, span.rows, span.cols)
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from exc
        latent_tokens = config.latent_tokens if config.latent_tokens is not None else request.latent_tokens
        steps = config.steps if config.steps is not None else request.latent_steps
        return LoopSetup(
            prefix=prefix,
            latents=self.initial_latents(latent_tokens),
            answer_start=self.vlm.answer_start(),
            option_ids=option_ids,
            prior=prior,
            steps=steps,
            inject=request.inject_patches and self.config.inject_patches,
            seed=request.seed,
            embedding_rms=self._embedding_rms,
            preferred=preferred_option(request.question, request.exemplar_type)
            if config.follow_exemplars
            else None,
            excluded=frozenset(
                contradicting_options(request.question, request.settled_score, config.verdict_margin)
                if config.follow_confident_verdict
                else ()
            ),
        )

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        """Optimise the latents, inject patches, decode the answer; the trace records every step.

        A :class:`~riad_agent.reasoning.cancel.CancelToken` given as ``progress`` stops the request
        (:class:`~riad_agent.errors.ReasoningCancelledError`) while it waits for the model, between
        stages, before each latent iteration's forward and before each decoded token, so the model
        is free again within one forward.
        """
        token = token_of(progress)
        acquire(self._lock, token)
        try:
            return self._reason(request, progress, token)
        finally:
            self._lock.release()

    def reason_batch(
        self, requests: list[ReasoningInput], progress: list[ProgressCallback | None] | None = None
    ) -> list[ReasoningResult | Exception]:
        """:meth:`reason` for several requests at once, with fewer, larger forwards.

        Prefixes run as one padded batch, the latent loops in lockstep (one group forward per
        iteration for all requests still running) and the decodes in lockstep too. Each request
        gets the result it would get alone (same seed, up to float rounding), or the exception that
        stopped it: a bad image or a cancelled caller (its progress callback raises, or its
        ``CancelToken`` is set) ends only its own request. Stage timings are
        the batch's; ``timings_ms["batch_size"]`` counts its requests.
        """
        with self._lock:
            try:
                return self._reason_batch(requests, progress or [None] * len(requests))
            finally:
                release = getattr(self.vlm, "release_group", None)
                if release is not None:
                    release()

    def _reason(
        self, request: ReasoningInput, progress: ProgressCallback | None, token: CancelToken | None
    ) -> ReasoningResult:
        total = time.perf_counter()
        prompt, timings = self._prompt(request)
        check(token)
        started = time.perf_counter()
        prefix = self.vlm.prefix_forward(prompt)
        timings["prefix_ms"] = (time.perf_counter() - started) * 1000.0
        setup = self._loop_setup(request, prefix)
        started = time.perf_counter()
        result = run_latent_loop(self.vlm, setup, self.config, progress)
        timings["latent_ms"] = (time.perf_counter() - started) * 1000.0
        check(token)
        started = time.perf_counter()
        decoded = decode_answer(
            self.vlm,
            setup,
            result.best,
            self.config.rationale_tokens,
            stop_check(token),
            self._stem(request, prefix),
        )
        check(token)  # a decode cut short is no answer
        timings["decode_ms"] = (time.perf_counter() - started) * 1000.0
        timings["total_ms"] = (time.perf_counter() - total) * 1000.0
        return self._result(setup, result, decoded, timings)

    def _reason_batch(
        self, requests: list[ReasoningInput], progress: list[ProgressCallback | None]
    ) -> list[ReasoningResult | Exception]:
        total = time.perf_counter()
        outcomes: list[ReasoningResult | Exception | None] = [None] * len(requests)
        timings: dict[int, dict[str, float]] = {}
        prompts: dict[int, PreparedPrompt] = {}
        for i, request in enumerate(requests):  # 1. prompts, each alone: a bad image fails only its request
            try:
                prompts[i], timings[i] = self._prompt(request)
            except Exception as exc:  # noqa: BLE001 - reported to this request only
                outcomes[i] = exc
        _drop_cancelled(prompts, progress, outcomes)
        started = time.perf_counter()  # 2. prefixes, one padded batch
        setups: dict[int, LoopSetup] = {}
        for i, prefix in self._prefixes(prompts, outcomes).items():
            try:
                setups[i] = self._loop_setup(requests[i], prefix)
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = exc
        shared = {"prefix_ms": (time.perf_counter() - started) * 1000.0}
        started = time.perf_counter()  # 3. latent loops in lockstep
        order = sorted(setups)
        loops = run_latent_loops(
            self.vlm, [setups[i] for i in order], self.config, [progress[i] for i in order]
        )
        shared["latent_ms"] = (time.perf_counter() - started) * 1000.0
        done: dict[int, LoopResult] = {}
        for i, loop in zip(order, loops, strict=True):
            if isinstance(loop, Exception):
                outcomes[i] = loop
            else:
                done[i] = loop
        _drop_cancelled(done, progress, outcomes)
        started = time.perf_counter()  # 4. decodes in lockstep
        stems = {i: self._stem(requests[i], setups[i].prefix) for i in done}
        decoded = self._decodes({i: setups[i] for i in done}, done, outcomes, progress, stems)
        _drop_cancelled(decoded, progress, outcomes)  # cut short by their tokens: no answer
        shared["decode_ms"] = (time.perf_counter() - started) * 1000.0
        shared["total_ms"] = (time.perf_counter() - total) * 1000.0
        shared["batch_size"] = float(len(requests))
        for i, answer in decoded.items():
            outcomes[i] = self._result(setups[i], done[i], answer, {**timings[i], **shared})
        return [cast(ReasoningResult | Exception, outcome) for outcome in outcomes]

    def _prefixes(
        self, prompts: dict[int, PreparedPrompt], outcomes: list[ReasoningResult | Exception | None]
    ) -> dict[int, PrefixState]:
        """Prefix states of the prompts: one batch, or one by one should the batch fail."""
        order = sorted(prompts)
        if isinstance(self.vlm, BatchedVisionLanguageModel) and len(order) > 1:
            try:
                return dict(
                    zip(order, self.vlm.prefix_forward_batch([prompts[i] for i in order]), strict=True)
                )
            except Exception:  # noqa: BLE001 - retried one by one below to find the culprit
                pass
        prefixes = {}
        for i in order:
            try:
                prefixes[i] = self.vlm.prefix_forward(prompts[i])
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = exc
        return prefixes

    def _decodes(
        self,
        setups: dict[int, LoopSetup],
        loops: dict[int, LoopResult],
        outcomes: list[ReasoningResult | Exception | None],
        progress: list[ProgressCallback | None],
        stems: dict[int, QuestionStem | None],
    ) -> dict[int, Decoded]:
        """Decoded answers of the finished loops: in lockstep, or one by one should that fail.

        A request whose cancel token is set stops decoding at its next token."""
        order = sorted(loops)
        tokens = self.config.rationale_tokens
        stops = {i: stop_check(token_of(progress[i])) for i in order}
        try:
            answers = decode_answers(
                self.vlm,
                [setups[i] for i in order],
                [loops[i].best for i in order],
                tokens,
                [stops[i] for i in order],
                [stems[i] for i in order],
            )
            return dict(zip(order, answers, strict=True))
        except Exception:  # noqa: BLE001 - retried one by one below to find the culprit
            pass
        decoded = {}
        for i in order:
            try:
                decoded[i] = decode_answer(self.vlm, setups[i], loops[i].best, tokens, stops[i], stems[i])
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = exc
        return decoded

    def _result(
        self, setup: LoopSetup, result: LoopResult, decoded: Decoded, timings: dict[str, float]
    ) -> ReasoningResult:
        trace = ReasoningTrace(
            model_id=self.model_id,
            precision=getattr(self.vlm, "precision", None),
            reward_kind=self.config.reward,
            latent_tokens=int(setup.latents.shape[0]),
            initial_reward=result.initial_reward,
            final_reward=result.best.reward,
            iterations=result.iterations,
            kept=injected_refs(setup, result),
            option_probabilities=decoded.probabilities,
            rationale=decoded.text,
            answer_source=decoded.source,
            model_answer=decoded.model_answer,
            stopped=result.stopped,
        )
        return ReasoningResult(answer=decoded.answer, text=decoded.text, trace=trace, timings_ms=timings)


_Kept = TypeVar("_Kept")

_STATS: weakref.WeakKeyDictionary[object, tuple[torch.Tensor, float]] = weakref.WeakKeyDictionary()


def model_embedding_stats(vlm: VisionLanguageModel) -> tuple[torch.Tensor, float]:
    """:func:`embedding_stats` of a model's table, computed once per model (the cache goes with the model)."""
    try:
        cached = _STATS.get(vlm)
    except TypeError:  # not weakly referenceable: computed every time
        return embedding_stats(vlm.embedding_matrix())
    if cached is None:
        cached = _STATS[vlm] = embedding_stats(vlm.embedding_matrix())
    return cached


def embedding_stats(table: torch.Tensor, chunk_rows: int = 8192) -> tuple[torch.Tensor, float]:
    """(mean row in float32, RMS of all entries) of an embedding table.

    Reads ``chunk_rows`` rows at a time in float32 (float64 sums), so a bf16 table of 152k x 3584
    never gets a float32 copy (the old way made two, about 4.4 GB).
    """
    rows, hidden = table.shape
    total = torch.zeros(hidden, dtype=torch.float64, device=table.device)
    squares = torch.zeros((), dtype=torch.float64, device=table.device)
    with torch.no_grad():
        for start in range(0, rows, chunk_rows):
            chunk = table[start : start + chunk_rows].float()
            total += chunk.sum(0, dtype=torch.float64)
            squares += chunk.pow(2).sum(dtype=torch.float64)
    return (total / rows).float(), float((squares / (rows * hidden)).sqrt())


def _drop_cancelled(
    pending: dict[int, _Kept],
    progress: list[ProgressCallback | None],
    outcomes: list[ReasoningResult | Exception | None],
) -> None:
    """Remove the requests whose cancel token is set from ``pending``; they end with their cancellation."""
    for index in sorted(pending):
        token = token_of(progress[index])
        if token is not None and token.cancelled:
            del pending[index]
            outcomes[index] = token.error()
