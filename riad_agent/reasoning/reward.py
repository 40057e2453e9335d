"""Rewards of the latent loop, computed on a batch of suffix rows.

* entropy (the paper's): ``R = 1 - mean_j H_k(p_j) / log k`` over the rewarded positions j (the
  latent positions and the answer position, see ``latent_loop``), where ``H_k`` is the entropy of
  the next-token distribution renormalised over its top-k tokens;
* option confidence: the top probability of the distribution over option letters at the answer
  position (letters spelled by several tokens take their best logit);
* entropy + expert map (not the paper's; it carries outside information): ``(1 - e) * entropy
  reward + e * A``, where ``A`` is the agreement of the row's latent attention on the query image
  with the vision expert's prior map (the attention-weighted mean prior over the cells, divided by
  the prior's maximum). A self-confidence reward can only sharpen the current answer; this one
  also pays for looking where the expert saw something. All rewards are computed in fp32.
"""

from __future__ import annotations

import math

import torch


def topk_entropy(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Normalised top-k entropy in [0, 1] of each row of ``logits`` (..., vocab)."""
    k = min(k, logits.shape[-1])
    top = logits.float().topk(k, dim=-1).values
    logp = top.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(k)


def entropy_reward(latent_logits: torch.Tensor, k: int) -> torch.Tensor:
    """``1 - mean normalised top-k entropy`` over positions: (rows, positions, vocab) -> (rows,)."""
    return 1.0 - topk_entropy(latent_logits, k).mean(-1)


def option_logits(answer_logits: torch.Tensor, option_ids: dict[str, list[int]]) -> torch.Tensor:
    """(..., vocab) -> (..., letters): each letter's best logit over the tokens that spell it."""
    columns = [answer_logits[..., ids].float().amax(-1) for ids in option_ids.values()]
    return torch.stack(columns, dim=-1)


def option_probabilities(answer_logits: torch.Tensor, option_ids: dict[str, list[int]]) -> torch.Tensor:
    """Softmax over the option letters only: (..., vocab) -> (..., letters)."""
    return option_logits(answer_logits, option_ids).softmax(-1)


def option_confidence_reward(answer_logits: torch.Tensor, option_ids: dict[str, list[int]]) -> torch.Tensor:
    """Top option probability at the answer position: (rows, vocab) -> (rows,)."""
    return option_probabilities(answer_logits, option_ids).amax(-1)


def map_agreement(attention: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Attention-weighted mean of the prior over the image's cells, over the prior's maximum, in [0, 1].

    ``attention``: (rows, cells) attention mass onto the query image; ``prior``: (cells,) in [0, 1].
    """
    weights = attention.float().clamp(min=0.0)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    peak = prior.float().max().clamp(min=1e-12)
    return (weights * prior.float().to(weights.device)).sum(-1) / peak
