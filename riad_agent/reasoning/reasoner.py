"""``LatentReasoner``: the in-process :class:`~riad_agent.protocols.Reasoner` over a VLM adapter."""

from __future__ import annotations

import threading
import time

import torch

from riad_agent.errors import InvalidRequestError
from riad_agent.models.base import VisionLanguageModel
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.decode import decode_answer
from riad_agent.reasoning.injection import pool_prior
from riad_agent.reasoning.latent_loop import LoopSetup, injected_refs, run_latent_loop
from riad_agent.reasoning.prompt import build_segments
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
        table = vlm.embedding_matrix().float()
        self._embedding_rms = float(table.pow(2).mean().sqrt())
        if self.config.latent_init == "token":
            self._init_vector = vlm.embed_text(self.config.think_token).float().mean(0)
        else:
            self._init_vector = table.mean(0)

    def initial_latents(self, count: int) -> torch.Tensor:
        """L copies of the initial latent embedding (float32)."""
        return self._init_vector.to(self.vlm.device).expand(count, -1).clone()

    def setup(self, request: ReasoningInput) -> tuple[LoopSetup, dict[str, float]]:
        """Build the prompt, run the prefix once and collect what the loop needs."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        config = self.config
        segments = build_segments(
            request, config.instruction, config.knowledge_chars, config.knowledge_hits, config.max_templates
        )
        prompt = self.vlm.prepare(segments)
        timings["prepare_ms"] = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        prefix = self.vlm.prefix_forward(prompt)
        timings["prefix_ms"] = (time.perf_counter() - started) * 1000.0
        option_ids = self.vlm.option_token_ids(list(request.question.options))
        missing = [letter for letter, ids in option_ids.items() if not ids]
        if missing:
            raise InvalidRequestError(
                f"option letters {', '.join(missing)} are not single tokens for {self.model_id}"
            )
        span = prompt.query_span
        prior = None
        if request.patch_prior is not None:
            try:
                prior = pool_prior(request.patch_prior, span.rows, span.cols)
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from exc
        latent_tokens = config.latent_tokens if config.latent_tokens is not None else request.latent_tokens
        steps = config.steps if config.steps is not None else request.latent_steps
        setup = LoopSetup(
            prefix=prefix,
            latents=self.initial_latents(latent_tokens),
            answer_start=self.vlm.answer_start(),
            option_ids=option_ids,
            prior=prior,
            steps=steps,
            inject=request.inject_patches and self.config.inject_patches,
            seed=request.seed,
            embedding_rms=self._embedding_rms,
        )
        return setup, timings

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        """Optimise the latents, inject patches, decode the answer; the trace records every step."""
        with self._lock:
            return self._reason(request, progress)

    def _reason(self, request: ReasoningInput, progress: ProgressCallback | None) -> ReasoningResult:
        total = time.perf_counter()
        setup, timings = self.setup(request)
        started = time.perf_counter()
        result = run_latent_loop(self.vlm, setup, self.config, progress)
        timings["latent_ms"] = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        decoded = decode_answer(self.vlm, setup, result.best, self.config.rationale_tokens)
        timings["decode_ms"] = (time.perf_counter() - started) * 1000.0
        timings["total_ms"] = (time.perf_counter() - total) * 1000.0
        trace = ReasoningTrace(
            model_id=self.model_id,
            reward_kind=self.config.reward,
            latent_tokens=int(setup.latents.shape[0]),
            initial_reward=result.initial_reward,
            final_reward=result.best.reward,
            iterations=result.iterations,
            injected=injected_refs(setup, result),
            option_probabilities=decoded.probabilities,
            rationale=decoded.text,
        )
        return ReasoningResult(answer=decoded.answer, text=decoded.text, trace=trace, timings_ms=timings)
