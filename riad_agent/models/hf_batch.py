"""Several requests' sequences in one forward of a transformers decoder (cross-request batching).

Each request has its own prompt prefix (own length, own KV cache). For a *group* forward the
prefixes are stacked on the batch axis, right-padded to the longest one, with the new tokens after
the padding::

    batch b:  [prefix b | zero padding up to P_max] [request b's new tokens | padding up to T_max]

An explicit boolean ``allowed`` (batch, queries, keys) says what each query may read: its own
prefix (never the padding) and, causally, its own row of new tokens. Position ids are explicit per
request (each continues its own prompt), so rotary schemes, M-RoPE included, see exactly what they
would see alone. Masked keys get the dtype's minimum, so their softmax weight is exactly zero and the
padding changes results only by float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer

from riad_agent.models.base import (
    PrefixState,
    PreparedPrompt,
    RowInjection,
    StopCheck,
    SuffixOutput,
    injection_blocks,
)
from riad_agent.models.hf_attention import additive_mask, packed_attention, suffix_allowed
from riad_agent.models.hf_cache import group_cache, group_rooms, split_cache
from riad_agent.models.hf_decoder import HFDecoderAdapter


def pad_sequences(sequences: list[torch.Tensor], length: int) -> torch.Tensor:
    """(tokens_b, ...) tensors -> (batch, length, ...), zero padded at the end."""
    first = sequences[0]
    out = first.new_zeros((len(sequences), length, *first.shape[1:]))
    for b, sequence in enumerate(sequences):
        out[b, : sequence.shape[0]] = sequence
    return out


class BatchedHFDecoderAdapter(HFDecoderAdapter):
    """:class:`HFDecoderAdapter` plus group forwards: several requests, each on its own prefix, at once.

    Implements :class:`~riad_agent.models.base.BatchedVisionLanguageModel`.
    """

    _group_scratch: tuple[list[PrefixState], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _groupable(self, prefixes: list[PrefixState]) -> bool:
        """Group forwards need two requests or more on plain ``DynamicLayer`` caches."""
        caches: list[Any] = [prefix.cache for prefix in prefixes]
        return len(prefixes) > 1 and all(
            type(layer) is DynamicLayer for cache in caches for layer in cache.layers
        )

    def _group_positions(self, positions: list[torch.Tensor], length: int) -> torch.Tensor:
        """Per-request position ids (model layout, batch axis second to last), padded to ``length``."""
        padded = [nn.functional.pad(p, (0, length - int(p.shape[-1]))) for p in positions]
        return torch.cat(padded, dim=-2)

    def _group_rooms(
        self, prefixes: list[PrefixState], suffix_length: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
        if (
            kept is not None
            and self._same_group(kept[0], prefixes)
            and kept[1][0][0].shape[-2] >= room + suffix_length
        ):
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
        """Run several prompts as one right-padded batch; each gets a batch-1 view of its cache.

        An adapter that keeps prompt heads runs them one by one instead: each then runs only what
        follows its (kept) head, fewer products on a CPU than the padded whole prompts, and a request
        gets the same prefix alone and in a group.
        """
        lengths = [p.length for p in prompts]
        extras = [self._visual_kwargs(p, p.length, [], with_prompt=True) for p in prompts]
        if len(prompts) < 2 or any(extras) or self._keeps_prompt_heads():
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
        injected: Sequence[Sequence[RowInjection]] | None = None,
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
        mask = additive_mask(
            suffix_allowed([p.prompt.length for p in prefixes], row_lengths, room, self.device), self.dtype
        )
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
        for b, (prefix, lengths, row_positions) in enumerate(
            zip(prefixes, row_lengths, positions, strict=True)
        ):
            starts = [sum(lengths[:i]) for i in range(len(lengths))]
            picks = torch.tensor(
                [start + p for start, row_pos in zip(starts, row_positions, strict=True) for p in row_pos],
                device=self.device,
            )
            logits = self._lm_head()(hidden[b, picks]).float()
            attention = None
            wanted = attend_from[b]
            if wanted is not None and any(wanted):
                attention = self._attention_to_query(
                    prefix.prompt, cache, captured, mask, starts, wanted, batch=b
                )
            outputs.append(
                SuffixOutput(logits=list(logits.split([len(p) for p in row_positions])), attention=attention)
            )
        return outputs

    def generate_batch(
        self,
        prefixes: list[PrefixState],
        rows: list[torch.Tensor],
        max_new_tokens: int,
        injected: Sequence[RowInjection | None] | None = None,
        should_stop: list[StopCheck | None] | None = None,
    ) -> list[tuple[torch.Tensor, list[int]]]:
        """:meth:`generate` for several requests in lockstep: one forward per new token for all of them.

        ``should_stop[i]`` is asked before each new token of request i; True ends its decode there
        (the others go on; the group's forwards end when every request has ended)."""
        injected = injected or [None for _ in prefixes]
        stops = should_stop or [None for _ in prefixes]
        extras = [
            self._visual_kwargs(p.prompt, int(r.shape[0]), injection_blocks(i), with_prompt=False)
            for p, r, i in zip(prefixes, rows, injected, strict=True)
        ]
        if not self._groupable(prefixes) or any(extras):
            return [
                self.generate(p, r, max_new_tokens, i, stop)
                for p, r, i, stop in zip(prefixes, rows, injected, stops, strict=True)
            ]
        with torch.no_grad():
            return self._generate_group(prefixes, rows, max_new_tokens, stops)

    def _generate_group(
        self,
        prefixes: list[PrefixState],
        rows: list[torch.Tensor],
        max_new_tokens: int,
        stops: list[StopCheck | None],
    ) -> list[tuple[torch.Tensor, list[int]]]:
        lengths = [int(r.shape[0]) for r in rows]
        prefix_lengths = [p.prompt.length for p in prefixes]
        room, width = max(prefix_lengths), max(lengths)
        capacity = room + width + max_new_tokens
        cache = group_cache(
            prefixes[0].cache, group_rooms([p.cache for p in prefixes], prefix_lengths, capacity), room
        )
        starts = [p.prompt.next_position for p in prefixes]
        first = suffix_allowed(prefix_lengths, [[n] for n in lengths], room, self.device)
        positions = [self._text_positions(torch.arange(width, device=self.device) + s) for s in starts]
        packed = pad_sequences([r.to(self.dtype) for r in rows], width)
        with packed_attention(self._language_model()):
            hidden, cache = self._run(
                packed, torch.cat(positions, dim=-2), cache, additive_mask(first, self.dtype)
            )
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
                stop = stops[b]
                if active[b] and (token in self.eos_token_ids or (stop is not None and stop())):
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
