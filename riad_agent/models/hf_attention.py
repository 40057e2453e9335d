"""Packed attention: transformers' sdpa without repeating grouped heads, and the masks of packed rows.

A *packed suffix* lays several rows out one after the other as one sequence on top of a prefix
cache; a block-diagonal causal mask lets every row see the whole prefix and its own earlier tokens,
never another row. With a mask, transformers copies the keys/values once per query-head group
(``repeat_kv``); :func:`packed_sdpa_attention` lets torch's CPU kernel read the grouped heads directly,
with bit-identical results (checked by a test).

Masks are built as booleans (what each query may read) and turned into additive masks for sdpa:
masked keys get the dtype's minimum, so their softmax weight is exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

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


def block_rows_allowed(row_lengths: list[int], device: torch.device) -> torch.Tensor:
    """(T, T) boolean: packed rows see, causally, only their own earlier tokens."""
    total = sum(row_lengths)
    row_id = torch.repeat_interleave(
        torch.arange(len(row_lengths), device=device), torch.tensor(row_lengths, device=device)
    )
    index = torch.arange(total, device=device)
    return (row_id[:, None] == row_id[None, :]) & (index[:, None] >= index[None, :])


def suffix_allowed(
    prefix_lengths: list[int], row_lengths: list[list[int]], room: int, device: torch.device
) -> torch.Tensor:
    """(batch, T_max, room + T_max): request b's packed rows see prefix b and their own row only.

    Padding queries (past request b's tokens) see prefix b, so no softmax row is empty.
    """
    totals = [sum(lengths) for lengths in row_lengths]
    width = max(totals)
    allowed = torch.zeros((len(totals), width, room + width), dtype=torch.bool, device=device)
    for b, (length, lengths) in enumerate(zip(prefix_lengths, row_lengths, strict=True)):
        allowed[b, :, :length] = True
        allowed[b, : totals[b], room : room + totals[b]] = block_rows_allowed(lengths, device)
    return allowed


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean (batch, queries, keys) -> additive (batch, 1, queries, keys) mask for sdpa."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def packed_suffix_mask(
    prefix_length: int, row_lengths: list[int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive mask (1, 1, T, prefix + T): rows see the prefix and, causally, only themselves."""
    rows = block_rows_allowed(row_lengths, device)
    prefix = torch.ones(rows.shape[0], prefix_length, dtype=torch.bool, device=device)
    return additive_mask(torch.cat([prefix, rows], dim=1)[None], dtype)
