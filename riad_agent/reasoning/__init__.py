"""Latent reasoning (Reason-IAD): test-time optimised think tokens with dynamic visual injection."""

from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.reasoner import LatentReasoner

__all__ = ["LatentConfig", "LatentReasoner"]
