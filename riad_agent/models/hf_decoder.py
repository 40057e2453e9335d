"""Shared machinery for adapters over a transformers decoder language model.

The key trick is the *packed suffix*: the K suffix rows of one latent-loop iteration are laid out one
after the other as a single sequence of batch size 1 on top of the prefix KV cache, with a
block-diagonal causal mask (every row sees the whole prefix and its own earlier tokens, never another
row). The prefix cache is therefore never expanded K times, and never mutated.

Two copies per layer and per forward are avoided as well, because on a CPU they cost about as much as
the suffix's own attention (see ``docs/reasoning.md``):

* the prefix keys/values are not concatenated with the suffix's in every layer of every forward
  (``DynamicLayer.update``): a *scratch* copy with room after the prefix is made once per prefix,
  and each forward writes only its own tokens into that room (:class:`ScratchLayer`);
* the keys/values are not repeated once per query-head group (transformers' ``repeat_kv``, taken
  whenever a mask is given): :func:`packed_sdpa_attention` lets torch's CPU kernel read the grouped
  heads directly. Both give bit-identical results (checked by a test).

Several requests can share one forward (cross-request batching, ``*_batch`` methods): their prefix
caches are stacked on the batch axis, right-padded, with a mask keeping every request to its own
prefix and rows (see :mod:`riad_agent.models.hf_batch`).

Subclasses provide the language model pieces and how text positions look for their rotary scheme.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from riad_agent.models.base import Injection, PrefixState, PreparedPrompt, SuffixOutput
from riad_agent.models.hf_batch import additive_mask, group_rooms, pad_sequences, split_cache, suffix_allowed


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotary helper: (x1, x2) -> (-x2, x1) on the last dimension halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def fork_cache(cache: Any) -> Any:
    """A cache that starts from ``cache``'s tensors without copying them and without sharing updates."""
    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    return fork


class ScratchLayer(DynamicLayer):
    """A fork of one prefix cache layer whose new keys/values go into preallocated room after the prefix.

    ``keys_room``/``values_room`` (1, kv heads, capacity, head dim) start with a copy of the prefix;
    :meth:`update` writes the new tokens in place right after it and returns views, so no forward
    copies the prefix again. The room is scratch: the next fork overwrites it.
    """

    def __init__(self, keys_room: torch.Tensor, values_room: torch.Tensor, prefix_length: int) -> None:
        super().__init__()
        self.keys_room, self.values_room = keys_room, values_room
        self.device = keys_room.device
        self.keys = keys_room[:, :, :prefix_length]
        self.values = values_room[:, :, :prefix_length]
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keys is not None and self.values is not None
        start = int(self.keys.shape[-2])
        end = start + int(key_states.shape[-2])
        if end > self.keys_room.shape[-2]:
            return super().update(key_states, value_states)  # no room left: concatenate (copies)
        self.keys_room[:, :, start:end].copy_(key_states)
        self.values_room[:, :, start:end].copy_(value_states)
        self.keys = self.keys_room[:, :, :end]
        self.values = self.values_room[:, :, :end]
        return self.keys, self.values


def scratch_fork(prefix: PrefixState, suffix_length: int) -> Any:
    """A fork of the prefix cache that writes ``suffix_length`` new tokens without copying the prefix.

    The room is allocated (and the prefix copied into it) once per prefix, or again when a longer
    suffix comes; it is kept on ``prefix.scratch``. Falls back to :func:`fork_cache` for layers of
    another kind than ``DynamicLayer`` and under autograd (in-place writes would chain the graphs of
    successive forwards).
    """
    cache: Any = prefix.cache
    if torch.is_grad_enabled() or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return fork_cache(cache)
    length = prefix.prompt.length
    rooms = cast(list[tuple[torch.Tensor, torch.Tensor]] | None, prefix.scratch)
    if rooms is None or rooms[0][0].shape[-2] < length + suffix_length:
        capacity = length + 2 * suffix_length  # some slack: suffix lengths vary between iterations
        rooms = []
        for layer in cache.layers:
            keys, values = layer.keys, layer.values
            keys_room = keys.new_empty((*keys.shape[:2], capacity, keys.shape[-1]))
            values_room = values.new_empty((*values.shape[:2], capacity, values.shape[-1]))
            keys_room[:, :, :length].copy_(keys)
            values_room[:, :, :length].copy_(values)
            rooms.append((keys_room, values_room))
        prefix.scratch = rooms
    fork = copy.copy(cache)
    fork.layers = [ScratchLayer(keys, values, length) for keys, values in rooms]
    return fork


def group_cache(template: Any, rooms: list[tuple[torch.Tensor, torch.Tensor]], filled: int) -> Any:
    """A cache of ``template``'s kind whose layers write new tokens into ``rooms`` after ``filled``."""
    fork = copy.copy(template)
    fork.layers = [ScratchLayer(keys, values, filled) for keys, values in rooms]
    return fork


PACKED_ATTENTION = "riad_packed_sdpa"


def packed_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, except that on CPU grouped-query heads are never repeated.

    With a mask, transformers copies the keys/values once per query-head group (``repeat_kv``); torch's
    CPU kernel takes grouped heads with a mask directly (``enable_gqa``) and gives the same result.
    On CUDA a mask with ``enable_gqa`` would fall back to the slow math kernel, so there (and without a
    mask) this is transformers' own sdpa path.
    """
    if attention_mask is None or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)


@contextmanager
def packed_attention(language_model: Any) -> Iterator[None]:
    """Run ``language_model``'s attention through :func:`packed_sdpa_attention` if it uses sdpa."""
    config = language_model.config
    previous = config._attn_implementation
    if previous != "sdpa":
        yield
        return
    config._attn_implementation = PACKED_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous


def packed_suffix_mask(
    prefix_length: int, row_lengths: list[int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive mask (1, 1, T, prefix + T): rows see the prefix and, causally, only themselves."""
    total = sum(row_lengths)
    row_id = torch.repeat_interleave(
        torch.arange(len(row_lengths), device=device), torch.tensor(row_lengths, device=device)
    )
    index = torch.arange(total, device=device)
    same_row = row_id[:, None] == row_id[None, :]
    causal = index[:, None] >= index[None, :]
    allowed = torch.cat(
        [torch.ones(total, prefix_length, dtype=torch.bool, device=device), same_row & causal], dim=1
    )
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class HFDecoderAdapter:
    """Packed-suffix forwards, attention capture and greedy decoding for a transformers decoder."""

    model_id: str
    device: torch.device
    dtype: torch.dtype
    hidden_size: int
    num_layers: int
    eos_token_ids: set[int]

    model: Any
    tokenizer: Any
    _group_scratch: tuple[list[PrefixState], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _bind(self, model: Any, tokenizer: Any, model_id: str) -> None:
        """Set what every adapter reads off its model: eval mode, device, dtype and text sizes."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        text_config = model.config.get_text_config()
        self.hidden_size = int(text_config.hidden_size)
        self.num_layers = int(text_config.num_hidden_layers)

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
        """Run the prompt once; its cache is reused by every suffix forward."""
        with torch.no_grad():
            extra = self._visual_kwargs(prompt, prompt.length, [], with_prompt=True)
            hidden, cache = self._run(prompt.inputs_embeds, prompt.position_ids, None, None, extra)
            last_logits = self._lm_head()(hidden[:, -1]).float()[0]
        return PrefixState(prompt=prompt, cache=cache, last_logits=last_logits)

    def suffix_forward(
        self,
        prefix: PrefixState,
        rows: list[torch.Tensor],
        positions: list[list[int]],
        attend_from: list[list[int]] | None = None,
        attention_layers: list[int] | None = None,
        injected: list[Injection] | None = None,
    ) -> SuffixOutput:
        """Evaluate all rows in one packed forward on a fork of the prefix cache.

        Without autograd it runs in inference mode (no view or version tracking: a few percent on
        CPU); its outputs and ``prefix.scratch`` are then inference tensors.
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
        injected: list[Injection] | None,
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
        spliced = [(start + at, idx) for start, (at, idx) in zip(starts, injected or [], strict=False) if idx]
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
        injected: Injection | None = None,
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
        injected: Injection | None,
    ) -> torch.Tensor:
        embeds = self._prompt_embeds(prompt, recompute_vision)
        sequence = torch.cat([embeds, row[None].to(self.dtype)], dim=1)
        tail = torch.arange(row.shape[0], device=self.device) + prompt.next_position
        position_ids = torch.cat([prompt.position_ids, self._text_positions(tail)], dim=-1)
        spliced = [(prompt.length + injected[0], injected[1])] if injected and injected[1] else []
        extra = self._visual_kwargs(prompt, int(sequence.shape[1]), spliced, with_prompt=True)
        hidden, _ = self._run(sequence, position_ids, None, None, extra)
        picks = torch.tensor(positions, device=self.device) + prompt.length
        return self._lm_head()(hidden[0, picks]).float()

    def _prompt_embeds(self, prompt: PreparedPrompt, recompute_vision: bool) -> torch.Tensor:
        return prompt.inputs_embeds

    def generate(
        self, prefix: PrefixState, row: torch.Tensor, max_new_tokens: int, injected: Injection | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """Greedy decoding after prefix + row; returns the logits at the row's last token and new ids."""
        prompt = prefix.prompt
        cache = fork_cache(prefix.cache)
        embed = self.embedding_layer()
        with torch.no_grad():
            start = prompt.next_position
            positions = torch.arange(row.shape[0], device=self.device) + start
            spliced = [injected] if injected and injected[1] else []
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
                if token in self.eos_token_ids:
                    break
                produced.append(token)
                step = embed(torch.tensor([[token]], device=self.device))
                hidden, cache = self._run(
                    step, self._text_positions(torch.tensor([position], device=self.device)), cache, None
                )
                logits = self._lm_head()(hidden[0, -1]).float()
                position += 1
        return first_logits, produced

    # -- group forwards: several requests, each on its own prefix, in one forward ------------------
    def _groupable(self, prefixes: list[PrefixState]) -> bool:
        """Group forwards need two requests or more on plain ``DynamicLayer`` caches."""
        caches: list[Any] = [prefix.cache for prefix in prefixes]
        return len(prefixes) > 1 and all(type(layer) is DynamicLayer for cache in caches for layer in cache.layers)

    def _group_positions(self, positions: list[torch.Tensor], length: int) -> torch.Tensor:
        """Per-request position ids (model layout, batch axis second to last), padded to ``length``."""
        padded = [nn.functional.pad(p, (0, length - int(p.shape[-1]))) for p in positions]
        return torch.cat(padded, dim=-2)

    def _group_rooms(self, prefixes: list[PrefixState], suffix_length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Stacked, padded prefix caches with room for ``suffix_length`` tokens, kept while the group lasts.

        Under autograd the rooms are fresh and exactly the prefix long (new tokens are concatenated),
        as :func:`scratch_fork` does for one request.
        """
        lengths = [p.prompt.length for p in prefixes]
        room = max(lengths)
        caches = [p.cache for p in prefixes]
        if torch.is_grad_enabled():
            with torch.no_grad():
                return group_rooms(caches, lengths, room)
        kept = self._group_scratch
        if kept is not None and self._same_group(kept[0], prefixes) and kept[1][0][0].shape[-2] >= room + suffix_length:
            return kept[1]
        rooms = group_rooms(caches, lengths, room + 2 * suffix_length)
        self._group_scratch = (list(prefixes), rooms)
        return rooms

    @staticmethod
    def _same_group(kept: list[PrefixState], prefixes: list[PrefixState]) -> bool:
        return len(kept) == len(prefixes) and all(a is b for a, b in zip(kept, prefixes, strict=True))

    def release_group(self) -> None:
        """Drop the stacked prefix caches kept for the last group."""
        self._group_scratch = None

    def prefix_forward_batch(self, prompts: list[PreparedPrompt]) -> list[PrefixState]:
        """Run several prompts as one right-padded batch; each gets a batch-1 view of its cache."""
        lengths = [p.length for p in prompts]
        extras = [self._visual_kwargs(p, p.length, [], with_prompt=True) for p in prompts]
        if len(prompts) < 2 or any(extras):
            return [self.prefix_forward(p) for p in prompts]
        width = max(lengths)
        allowed = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        allowed = allowed[None].repeat(len(prompts), 1, 1)
        for b, length in enumerate(lengths):
            allowed[b, :, length:] = False
        with torch.no_grad():
            embeds = pad_sequences([p.inputs_embeds[0] for p in prompts], width)
            position_ids = self._group_positions([p.position_ids for p in prompts], width)
            with packed_attention(self._language_model()):
                hidden, cache = self._run(embeds, position_ids, None, additive_mask(allowed, self.dtype))
            last = torch.stack([hidden[b, length - 1] for b, length in enumerate(lengths)])
            logits = self._lm_head()(last).float()
        caches = split_cache(cache, cache, lengths)
        return [
            PrefixState(prompt=p, cache=c, last_logits=logits[b])
            for b, (p, c) in enumerate(zip(prompts, caches, strict=True))
        ]

    def suffix_forward_batch(
        self,
        prefixes: list[PrefixState],
        rows: list[list[torch.Tensor]],
        positions: list[list[list[int]]],
        attend_from: list[list[list[int]] | None],
        attention_layers: list[int] | None = None,
        injected: list[list[Injection]] | None = None,
    ) -> list[SuffixOutput]:
        """:meth:`suffix_forward` for several requests (each its own prefix) in one group forward.

        Falls back to one forward per request when the group cannot be stacked (a single request,
        other cache layers, models with extra visual inputs at spliced patches).
        """
        injected = injected or [[] for _ in prefixes]
        spliced = [self._spliced(rows_b, inj) for rows_b, inj in zip(rows, injected, strict=True)]
        extras = [
            self._visual_kwargs(p.prompt, sum(int(r.shape[0]) for r in rows_b), s, with_prompt=False)
            for p, rows_b, s in zip(prefixes, rows, spliced, strict=True)
        ]
        if not self._groupable(prefixes) or any(extras):
            return [
                self.suffix_forward(p, r, pos, a, attention_layers, inj)
                for p, r, pos, a, inj in zip(prefixes, rows, positions, attend_from, injected, strict=True)
            ]
        with torch.inference_mode(not torch.is_grad_enabled()):
            return self._suffix_forward_group(prefixes, rows, positions, attend_from, attention_layers)

    def _spliced(self, rows: list[torch.Tensor], injected: list[Injection]) -> list[Injection]:
        """Injections of packed rows, as offsets into the packed sequence."""
        starts = [0]
        for row in rows[:-1]:
            starts.append(starts[-1] + int(row.shape[0]))
        return [(start + at, idx) for start, (at, idx) in zip(starts, injected, strict=False) if idx]

    def _suffix_forward_group(
        self,
        prefixes: list[PrefixState],
        rows: list[list[torch.Tensor]],
        positions: list[list[list[int]]],
        attend_from: list[list[list[int]] | None],
        attention_layers: list[int] | None,
    ) -> list[SuffixOutput]:
        row_lengths = [[int(r.shape[0]) for r in rows_b] for rows_b in rows]
        totals = [sum(lengths) for lengths in row_lengths]
        width = max(totals)
        room = max(p.prompt.length for p in prefixes)
        packed = pad_sequences([torch.cat(rows_b, dim=0).to(self.dtype) for rows_b in rows], width)
        offsets = [
            torch.cat([torch.arange(n, device=self.device) for n in lengths]) + p.prompt.next_position
            for p, lengths in zip(prefixes, row_lengths, strict=True)
        ]
        position_ids = self._group_positions([self._text_positions(o) for o in offsets], width)
        mask = additive_mask(suffix_allowed([p.prompt.length for p in prefixes], row_lengths, room, self.device), self.dtype)
        cache = group_cache(prefixes[0].cache, self._group_rooms(prefixes, width), room)
        attending = any(a is not None and any(a) for a in attend_from)
        layers = self._resolve_layers(attention_layers) if attending else []
        captured: dict[int, tuple[torch.Tensor, Any]] = {}
        handles = [self._capture(idx, captured) for idx in layers]
        try:
            with packed_attention(self._language_model()):
                hidden, cache = self._run(packed, position_ids, cache, mask)
        finally:
            for handle in handles:
                handle.remove()
        outputs = []
        for b, (prefix, lengths, row_positions) in enumerate(zip(prefixes, row_lengths, positions, strict=True)):
            starts = [sum(lengths[:i]) for i in range(len(lengths))]
            picks = torch.tensor(
                [start + p for start, row_pos in zip(starts, row_positions, strict=True) for p in row_pos],
                device=self.device,
            )
            logits = self._lm_head()(hidden[b, picks]).float()
            attention = None
            wanted = attend_from[b]
            if wanted is not None and any(wanted):
                attention = self._attention_to_query(prefix.prompt, cache, captured, mask, starts, wanted, batch=b)
            outputs.append(SuffixOutput(logits=list(logits.split([len(p) for p in row_positions])), attention=attention))
        return outputs

    def generate_batch(
        self,
        prefixes: list[PrefixState],
        rows: list[torch.Tensor],
        max_new_tokens: int,
        injected: list[Injection | None] | None = None,
    ) -> list[tuple[torch.Tensor, list[int]]]:
        """:meth:`generate` for several requests in lockstep: one forward per new token for all of them."""
        injected = injected or [None for _ in prefixes]
        extras = [
            self._visual_kwargs(p.prompt, int(r.shape[0]), [i] if i and i[1] else [], with_prompt=False)
            for p, r, i in zip(prefixes, rows, injected, strict=True)
        ]
        if not self._groupable(prefixes) or any(extras):
            return [self.generate(p, r, max_new_tokens, i) for p, r, i in zip(prefixes, rows, injected, strict=True)]
        with torch.no_grad():
            return self._generate_group(prefixes, rows, max_new_tokens)

    def _generate_group(
        self, prefixes: list[PrefixState], rows: list[torch.Tensor], max_new_tokens: int
    ) -> list[tuple[torch.Tensor, list[int]]]:
        lengths = [int(r.shape[0]) for r in rows]
        prefix_lengths = [p.prompt.length for p in prefixes]
        room, width = max(prefix_lengths), max(lengths)
        capacity = room + width + max_new_tokens
        cache = group_cache(prefixes[0].cache, group_rooms([p.cache for p in prefixes], prefix_lengths, capacity), room)
        starts = [p.prompt.next_position for p in prefixes]
        first = suffix_allowed(prefix_lengths, [[n] for n in lengths], room, self.device)
        positions = [self._text_positions(torch.arange(width, device=self.device) + s) for s in starts]
        packed = pad_sequences([r.to(self.dtype) for r in rows], width)
        with packed_attention(self._language_model()):
            hidden, cache = self._run(packed, torch.cat(positions, dim=-2), cache, additive_mask(first, self.dtype))
        ends = torch.tensor(lengths, device=self.device) - 1
        first_logits = self._lm_head()(hidden[torch.arange(len(rows), device=self.device), ends]).float()
        # which cache slots each request reads from now on: its prefix, its own row, its new tokens
        seen = torch.zeros((len(rows), capacity), dtype=torch.bool, device=self.device)
        for b, (length, n) in enumerate(zip(prefix_lengths, lengths, strict=True)):
            seen[b, :length] = True
            seen[b, room : room + n] = True
        produced: list[list[int]] = [[] for _ in rows]
        active = [True for _ in rows]
        logits = first_logits
        embed = self.embedding_layer()
        for step in range(max_new_tokens):
            tokens = logits.argmax(-1).tolist()
            for b, token in enumerate(tokens):
                if active[b] and token in self.eos_token_ids:
                    active[b] = False
                elif active[b]:
                    produced[b].append(int(token))
            if not any(active):
                break
            slot = room + width + step
            seen[:, slot] = True
            step_ids = torch.tensor([[t] for t in tokens], device=self.device)
            step_positions = [
                self._text_positions(torch.tensor([s + n + step], device=self.device))
                for s, n in zip(starts, lengths, strict=True)
            ]
            mask = additive_mask(seen[:, None, : slot + 1], self.dtype)
            with packed_attention(self._language_model()):
                hidden, cache = self._run(embed(step_ids), torch.cat(step_positions, dim=-2), cache, mask)
            logits = self._lm_head()(hidden[:, -1]).float()
        return [(first_logits[b], produced[b]) for b in range(len(rows))]

    def embedding_layer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        layer: Callable[[torch.Tensor], torch.Tensor] = self._language_model().get_input_embeddings()
        return layer

    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding table (vocab x hidden)."""
        table: torch.Tensor = self._language_model().get_input_embeddings().weight.detach()
        return table
