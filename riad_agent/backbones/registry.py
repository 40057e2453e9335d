"""Backbones by name: the shipped ones, ``timm:<model>``, and any a user registers.

A new shipped backbone is one module with a ``factories()`` mapping (see ``efficientnet.py``), added
to :data:`_SHIPPED` below.
"""

from __future__ import annotations

import threading

from riad_agent.backbones import efficientnet
from riad_agent.backbones.feature_backbone import BackboneFactory, FeatureBackbone
from riad_agent.backbones.timm_models import timm_factory
from riad_agent.errors import ModelLoadError

_SHIPPED: tuple[dict[str, BackboneFactory], ...] = (efficientnet.factories(),)

_REGISTRY: dict[str, BackboneFactory] = {name: made for named in _SHIPPED for name, made in named.items()}
_CACHE: dict[str, FeatureBackbone] = {}
_CACHE_LOCK = threading.Lock()


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make ``factory`` available as backbone ``name`` (replaces an earlier registration)."""
    with _CACHE_LOCK:
        _REGISTRY[name] = factory
        _CACHE.pop(name, None)


def available_backbones() -> list[str]:
    """Registered backbone names (``timm:<model>`` also works when timm is installed)."""
    return sorted(_REGISTRY)


def load_backbone(name: str) -> FeatureBackbone:
    """The backbone registered as ``name`` (built once per process), or :class:`ModelLoadError`."""
    with _CACHE_LOCK:
        if name in _CACHE:
            return _CACHE[name]
        if name in _REGISTRY:
            factory = _REGISTRY[name]
        elif name.startswith("timm:"):
            factory = timm_factory(name.split(":", 1)[1])
        else:
            known = ", ".join(available_backbones())
            raise ModelLoadError(f"unknown expert backbone {name!r}; known: {known}, or 'timm:<model>'")
        try:
            backbone = factory()
        except ModelLoadError:
            raise
        except Exception as exc:  # any factory failure is a load failure with a readable reason
            raise ModelLoadError(
                f"cannot load expert backbone {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _CACHE[name] = backbone
        return backbone
