"""Shared machinery for adapters over a transformers decoder language model: one request at a time.

The key trick is the *packed suffix*: the K suffix rows of one latent-loop iteration are laid out one
after the other as a single sequence of batch size 1 on top of the prefix KV cache, with a
block-diagonal causal mask (every row sees the whole prefix and its own earlier tokens, never another
row). The prefix cache is therefore never expanded K times, and never mutated.

Two copies per layer and per forward are avoided as well: the prefix keys/values are not
concatenated with the suffix's (a scratch room after the prefix, :mod:`riad_agent.models.hf_cache`),
and grouped query heads are not repeated (:mod:`riad_agent.models.hf_attention`).

Several requests sharing one forward (cross-request batching) is :mod:`riad_agent.models.hf_batch`.
Subclasses provide the language model pieces and how text positions look for their rotary scheme.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import DynamicCache

from riad_agent.models.base import (
    Injection,
    PrefixState,
    PreparedPrompt,
    RowInjection,
    StopCheck,
    SuffixOutput,
    injection_blocks,
)
from riad_agent.models.hf_attention import packed_attention, packed_suffix_mask
from riad_agent.models.hf_cache import fork_cache, scratch_fork
from riad_agent.models.int8 import DynamicInt8Linear


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotary helper: (x1, x2) -> (-x2, x1) on the last dimension halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


#: Prompt heads (the text before a prompt's first image) kept per adapter, and the shortest one worth keeping.
PROMPT_HEADS = 4
PROMPT_HEAD_MIN_TOKENS = 32


class HFDecoderAdapter:
    """Packed-suffix forwards, attention capture and greedy decoding for a transformers decoder."""

    #: Whether :meth:`prefix_forward` keeps the KV cache of a prompt's *head* (its tokens before the
    #: first image: the system turn, the instruction, the knowledge) and runs only the rest of a later
    #: prompt that starts with the same tokens. Only for adapters whose positions are plain token
    #: indices and whose prefix needs no extra inputs (the builtin model, not in int8); hub VLMs keep False.
    reuses_prompt_head: ClassVar[bool] = False

    model_id: str
    device: torch.device
    dtype: torch.dtype
    precision: str
    hidden_size: int
    num_layers: int
    eos_token_ids: set[int]

    model: Any
    tokenizer: Any

    def _bind(self, model: Any, tokenizer: Any, model_id: str) -> None:
        """Set what every adapter reads off its model: eval mode, device, dtype and text sizes."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        int8 = any(isinstance(module, DynamicInt8Linear) for module in model.modules())
        self.precision = "int8" if int8 else str(param.dtype).removeprefix("torch.")
        text_config = model.config.get_text_config()
        self.hidden_size = int(text_config.hidden_size)
        self.num_layers = int(text_config.num_hidden_layers)
        self._prompt_heads: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._prompt_heads_lock = threading.Lock()

    # -- tokens (shared by every transformers tokenizer) -------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def embed_text(self, text: str) -> torch.Tensor:
        ids = torch.tensor(self._encode(text), device=self.device, dtype=torch.long)
        with torch.no_grad():
            embedded: torch.Tensor = self.embedding_layer()(ids)
        return embedded

    def option_token_ids(self, letters: list[str]) -> dict[str, list[int]]:
        """Single-token ids of each option letter, bare and with a leading space."""
        found: dict[str, list[int]] = {}
        for letter in letters:
            ids: list[int] = []
            for text in (letter, " " + letter):
                encoded = self._encode(text)
                if len(encoded) == 1 and encoded[0] not in ids:
                    ids.append(encoded[0])
            found[letter] = ids
        return found

    def decode_tokens(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    # -- model pieces (the transformers VLM layout: model.model.language_model + lm_head) ----------
    def _language_model(self) -> Any:
        return self.model.model.language_model

    def _lm_head(self) -> Any:
        return self.model.lm_head

    def _decoder_layers(self) -> Any:
        return self.model.model.language_model.layers

    # -- pieces a subclass provides -------------------------------------------------------------

    def _text_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """Position ids for text tokens at the given 1-D positions (shape as the model expects)."""
        raise NotImplementedError

    def _query_states(self, layer: Any, hidden: torch.Tensor, rotary: Any) -> torch.Tensor:
        """Rotated query states (1, heads, tokens, head_dim) of ``layer.self_attn`` for ``hidden``."""
        attn = layer.self_attn
        batch, tokens, _ = hidden.shape
        head_dim = attn.head_dim
        query = attn.q_proj(hidden).view(batch, tokens, -1, head_dim).transpose(1, 2)
        cos, sin = rotary
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return query * cos + rotate_half(query) * sin

    # -- shared implementation ------------------------------------------------------------------
    def _run(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any,
        attention_mask: torch.Tensor | None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, Any]:
        out = self._language_model()(
            inputs_embeds=embeds,
            position_ids=position_ids,
            attention_mask=attention_mask,
            cache=cache if cache is not None else DynamicCache(),
            use_cache=True,
            **(extra or {}),
        )
        return out.last_hidden_state, out.cache

    def _visual_kwargs(
        self, prompt: PreparedPrompt, length: int, spliced: list[Injection], with_prompt: bool
    ) -> dict[str, Any]:
        """Extra language-model inputs for visual tokens of a sequence of ``length`` tokens.

        ``spliced`` lists (sequence offset, query patch indices); ``with_prompt`` says whether the
        sequence starts with the prompt itself. Most models need nothing (the default).
        """
        return {}

    def prefix_forward(self, prompt: PreparedPrompt) -> PrefixState:
        """Run the prompt once; its cache is reused by every suffix forward.

        With :attr:`reuses_prompt_head`, a head seen before is not run again (see :meth:`_prompt_head`);
        not in int8, whose per-call activation quantisation would then see other rows (its answers were
        checked with whole prompts: split, one of the checks moved by 0.10).
        """
        with torch.no_grad():
            extra = self._visual_kwargs(prompt, prompt.length, [], with_prompt=True)
            start, cache = (
                self._prompt_head(prompt) if self._keeps_prompt_heads() and not extra else (0, None)
            )
            hidden, cache = self._run(
                prompt.inputs_embeds[:, start:], prompt.position_ids[..., start:], cache, None, extra
            )
            last_logits = self._lm_head()(hidden[:, -1]).float()[0]
        return PrefixState(prompt=prompt, cache=cache, last_logits=last_logits)

    def _keeps_prompt_heads(self) -> bool:
        """Whether prompt heads are kept: the adapter opts in and multiplies in fp32 or bf16."""
        return self.reuses_prompt_head and self.precision != "int8"

    def _prompt_head(self, prompt: PreparedPrompt) -> tuple[int, Any]:
        """``(n, cache)``: a fork of the KV cache of the prompt's first ``n`` tokens, its text before the
        first image, run once per distinct head and kept (the last :data:`PROMPT_HEADS`); ``(0, None)``
        when the head is shorter than :data:`PROMPT_HEAD_MIN_TOKENS` or the prompt has no image.

        Inspections of one product repeat the system turn, the instruction and the knowledge (148 of the
        builtin's 242 prompt tokens); only the image, its evidence and the question differ.
        """
        length = min((span.start for span in prompt.spans), default=0)
        if length < PROMPT_HEAD_MIN_TOKENS:
            return 0, None
        key = tuple(int(token) for token in prompt.input_ids[0, :length].tolist())
        with self._prompt_heads_lock:
            cache = self._prompt_heads.get(key)
            if cache is not None:
                self._prompt_heads.move_to_end(key)
        if cache is None:
            _, cache = self._run(
                prompt.inputs_embeds[:, :length], prompt.position_ids[..., :length], None, None, None
            )
            with self._prompt_heads_lock:
                self._prompt_heads[key] = cache
                while len(self._prompt_heads) > PROMPT_HEADS:
                    self._prompt_heads.popitem(last=False)
        return length, fork_cache(cache)

    def suffix_forward(
        self,
        prefix: PrefixState,
        rows: list[torch.Tensor],
        positions: list[list[int]],
        attend_from: list[list[int]] | None = None,
        attention_layers: list[int] | None = None,
        injected: Sequence[RowInjection] | None = None,
    ) -> SuffixOutput:
        """Evaluate all rows in one packed forward on a fork of the prefix cache.

        Without autograd it runs in inference mode (no view or version tracking); its outputs and
        ``prefix.scratch`` are then inference tensors.
        """
        with torch.inference_mode(not torch.is_grad_enabled()):
            return self._suffix_forward(prefix, rows, positions, attend_from, attention_layers, injected)

    def _suffix_forward(
        self,
        prefix: PrefixState,
        rows: list[torch.Tensor],
        positions: list[list[int]],
        attend_from: list[list[int]] | None,
        attention_layers: list[int] | None,
        injected: Sequence[RowInjection] | None,
    ) -> SuffixOutput:
        prompt = prefix.prompt
        lengths = [int(row.shape[0]) for row in rows]
        packed = torch.cat(rows, dim=0)[None].to(self.dtype)
        offsets = torch.cat([torch.arange(n, device=self.device) for n in lengths]) + prompt.next_position
        mask = packed_suffix_mask(prompt.length, lengths, self.dtype, self.device)
        cache = scratch_fork(prefix, sum(lengths))
        layers = (
            self._resolve_layers(attention_layers) if attend_from is not None and any(attend_from) else []
        )
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        spliced = self._spliced(rows, injected or [])
        extra = self._visual_kwargs(prompt, sum(lengths), spliced, with_prompt=False)
        captured: dict[int, tuple[torch.Tensor, Any]] = {}
        handles = [self._capture(idx, captured) for idx in layers]
        try:
            with packed_attention(self._language_model()):
                hidden, cache = self._run(packed, self._text_positions(offsets), cache, mask, extra)
        finally:
            for handle in handles:
                handle.remove()
        picks = torch.tensor(
            [start + p for start, row_pos in zip(starts, positions, strict=True) for p in row_pos],
            device=self.device,
        )
        logits = self._lm_head()(hidden[0, picks]).float()
        split = logits.split([len(p) for p in positions])
        attention = None
        if attend_from is not None and any(attend_from):
            attention = self._attention_to_query(prompt, cache, captured, mask, starts, attend_from)
        return SuffixOutput(logits=list(split), attention=attention)

    def _resolve_layers(self, layers: list[int] | None) -> list[int]:
        if not layers:
            layers = [self.num_layers // 2, (3 * self.num_layers) // 4]
        return sorted({idx % self.num_layers for idx in layers})

    def _capture(self, layer_idx: int, store: dict[int, tuple[torch.Tensor, Any]]) -> Any:
        attn = self._decoder_layers()[layer_idx].self_attn

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden: torch.Tensor = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            store[layer_idx] = (hidden.detach(), kwargs["position_embeddings"])

        return attn.register_forward_pre_hook(hook, with_kwargs=True)

    def _attention_to_query(
        self,
        prompt: PreparedPrompt,
        cache: Any,
        captured: dict[int, tuple[torch.Tensor, Any]],
        mask: torch.Tensor,
        starts: list[int],
        attend_from: list[list[int]],
        batch: int = 0,
    ) -> list[torch.Tensor]:
        """Softmax attention of the chosen suffix tokens onto the query image, from q and cached k.

        ``batch`` picks the request in a group forward (its hidden states, rotary, keys and mask).
        """
        span = prompt.query_span
        rows_idx = torch.tensor(
            [start + p for start, row_pos in zip(starts, attend_from, strict=True) for p in row_pos],
            device=self.device,
        )
        per_layer = []
        for layer_idx, (hidden, rotary) in captured.items():
            layer = self._decoder_layers()[layer_idx]
            here = slice(batch, batch + 1)
            with torch.no_grad():
                cos, sin = (t.detach()[here, rows_idx] for t in rotary)  # only the attending rows
                query = self._query_states(layer, hidden[here, rows_idx], (cos, sin)).float()
                keys = cache.layers[layer_idx].keys[here].float()
                _, heads, count, head_dim = query.shape
                kv_heads = keys.shape[1]
                # query head h reads key head h // groups: group the query heads instead of repeating keys
                grouped = query.reshape(1, kv_heads, (heads // kv_heads) * count, head_dim)
                scores = (grouped @ keys.transpose(-1, -2)).view(1, heads, count, -1)
                scores = scores / math.sqrt(head_dim) + mask[here, :, rows_idx].float().clamp(min=-1e30)
                probs = scores.softmax(-1)[0, :, :, span.start : span.end]  # heads x rows x image tokens
                per_layer.append(probs.mean(0))
        mean = torch.stack(per_layer).mean(0)  # rows x image tokens
        counts = [len(p) for p in attend_from]
        return [chunk.mean(0) if len(chunk) else chunk.new_zeros(span.length) for chunk in mean.split(counts)]

    def full_forward(
        self,
        prompt: PreparedPrompt,
        row: torch.Tensor,
        positions: list[int],
        recompute_vision: bool = False,
        injected: RowInjection | None = None,
    ) -> torch.Tensor:
        """Uncached: prompt + row as one sequence (logits at the row positions ``positions``)."""
        with torch.no_grad():
            return self._full_forward(prompt, row, positions, recompute_vision, injected)

    def _full_forward(
        self,
        prompt: PreparedPrompt,
        row: torch.Tensor,
        positions: list[int],
        recompute_vision: bool,
        injected: RowInjection | None,
    ) -> torch.Tensor:
        embeds = self._prompt_embeds(prompt, recompute_vision)
        sequence = torch.cat([embeds, row[None].to(self.dtype)], dim=1)
        tail = torch.arange(row.shape[0], device=self.device) + prompt.next_position
        position_ids = torch.cat([prompt.position_ids, self._text_positions(tail)], dim=-1)
        spliced = [(prompt.length + at, indices) for at, indices in injection_blocks(injected)]
        extra = self._visual_kwargs(prompt, int(sequence.shape[1]), spliced, with_prompt=True)
        hidden, _ = self._run(sequence, position_ids, None, None, extra)
        picks = torch.tensor(positions, device=self.device) + prompt.length
        return self._lm_head()(hidden[0, picks]).float()

    def _prompt_embeds(self, prompt: PreparedPrompt, recompute_vision: bool) -> torch.Tensor:
        return prompt.inputs_embeds

    def generate(
        self,
        prefix: PrefixState,
        row: torch.Tensor,
        max_new_tokens: int,
        injected: RowInjection | None = None,
        should_stop: StopCheck | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Greedy decoding after prefix + row; returns the logits at the row's last token and new ids.

        ``should_stop`` is asked before each new token's forward; True ends the decode there."""
        prompt = prefix.prompt
        cache = fork_cache(prefix.cache)
        embed = self.embedding_layer()
        with torch.no_grad():
            start = prompt.next_position
            positions = torch.arange(row.shape[0], device=self.device) + start
            spliced = injection_blocks(injected)
            extra = self._visual_kwargs(prompt, int(row.shape[0]), spliced, with_prompt=False)
            hidden, cache = self._run(
                row[None].to(self.dtype), self._text_positions(positions), cache, None, extra
            )
            first_logits = self._lm_head()(hidden[0, -1]).float()
            logits = first_logits
            produced: list[int] = []
            position = start + int(row.shape[0])
            for _ in range(max_new_tokens):
                token = int(logits.argmax())
                if token in self.eos_token_ids or (should_stop is not None and should_stop()):
                    break
                produced.append(token)
                step = embed(torch.tensor([[token]], device=self.device))
                hidden, cache = self._run(
                    step, self._text_positions(torch.tensor([position], device=self.device)), cache, None
                )
                logits = self._lm_head()(hidden[0, -1]).float()
                position += 1
        return first_logits, produced

    def _spliced(self, rows: list[torch.Tensor], injected: Sequence[RowInjection]) -> list[Injection]:
        """Injections of packed rows (each one block or several), as offsets into the packed sequence."""
        starts = [0]
        for row in rows[:-1]:
            starts.append(starts[-1] + int(row.shape[0]))
        return [
            (start + at, idx)
            for start, row_injection in zip(starts, injected, strict=False)
            for at, idx in injection_blocks(row_injection)
        ]

    def embedding_layer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        layer: Callable[[torch.Tensor], torch.Tensor] = self._language_model().get_input_embeddings()
        return layer

    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding table (vocab x hidden)."""
        table: torch.Tensor = self._language_model().get_input_embeddings().weight.detach()
        return table
