"""Pieces for running several requests' sequences in one forward of a transformers decoder.

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

import copy
from typing import Any

import torch


def pad_sequences(sequences: list[torch.Tensor], length: int) -> torch.Tensor:
    """(tokens_b, ...) tensors -> (batch, length, ...), zero padded at the end."""
    first = sequences[0]
    out = first.new_zeros((len(sequences), length, *first.shape[1:]))
    for b, sequence in enumerate(sequences):
        out[b, : sequence.shape[0]] = sequence
    return out


def group_rooms(caches: list[Any], prefix_lengths: list[int], capacity: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, zero-filled (batch, kv heads, capacity, head dim) keys/values with prefix b in row b."""
    rooms = []
    for index, layer in enumerate(caches[0].layers):
        keys, values = layer.keys, layer.values
        keys_room = keys.new_zeros((len(caches), keys.shape[1], capacity, keys.shape[-1]))
        values_room = values.new_zeros((len(caches), values.shape[1], capacity, values.shape[-1]))
        for b, (cache, length) in enumerate(zip(caches, prefix_lengths, strict=True)):
            keys_room[b, :, :length].copy_(cache.layers[index].keys[0, :, :length])
            values_room[b, :, :length].copy_(cache.layers[index].values[0, :, :length])
        rooms.append((keys_room, values_room))
    return rooms


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


def split_cache(template: Any, batched: Any, lengths: list[int]) -> list[Any]:
    """Batch-1 caches (views) of each request's first ``lengths[b]`` tokens of a batched cache."""
    caches = []
    for b, length in enumerate(lengths):
        fork = copy.copy(template)
        layers = []
        for layer in batched.layers:
            single = copy.copy(layer)
            single.keys = layer.keys[b : b + 1, :, :length]
            single.values = layer.values[b : b + 1, :, :length]
            layers.append(single)
        fork.layers = layers
        caches.append(fork)
    return caches
