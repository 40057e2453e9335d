"""The builtin compact VLM: EfficientNet-Lite0 cells + expert evidence -> trained projector -> SmolLM2-135M.

``load_builtin()`` returns a :class:`BuiltinAdapter`, a ``VisionLanguageModel`` like the Qwen-VL and
LLaVA adapters, so the latent reasoner runs on it unchanged. See ``docs/builtin.md``.
"""

from riad_agent.models.builtin.adapter import BuiltinAdapter
from riad_agent.models.builtin.loading import BUILTIN_ID, WEIGHTS_PATH, load_builtin

__all__ = ["BUILTIN_ID", "WEIGHTS_PATH", "BuiltinAdapter", "load_builtin"]
