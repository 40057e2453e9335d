"""KV caches of a prompt prefix: forks that never mutate it, and scratch room for new tokens.

The prefix cache is shared by every suffix forward and never mutated. Concatenating the prefix's
keys/values with the new tokens' in every layer of every forward (``DynamicLayer.update``) would copy
the prefix each time; on a CPU that costs about as much as the suffix's own attention (see
``docs/reasoning.md``). Instead a *scratch* copy with room after the prefix is made once per prefix
(:func:`scratch_fork`), and each forward writes only its own tokens into that room
(:class:`ScratchLayer`). Group forwards stack several prefixes in one such room (:func:`group_rooms`).
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from transformers.cache_utils import DynamicLayer

from riad_agent.models.base import PrefixState


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


def group_rooms(
    caches: list[Any], prefix_lengths: list[int], capacity: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
