"""The few-shot vision expert: PatchCore-style anomaly maps from normal reference images."""

from riad_agent.expert.backbones import (
    FeatureBackbone,
    available_backbones,
    load_backbone,
    register_backbone,
    torch_module_backbone,
)
from riad_agent.expert.bank import BankCache, MemoryBank, greedy_coreset, nearest_distances
from riad_agent.expert.calibration import Calibration, calibrate, fit_calibration
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.factory import open_expert
from riad_agent.expert.features import FeatureConfig, PatchFeatureExtractor

__all__ = [
    "BankCache",
    "Calibration",
    "ExpertConfig",
    "FeatureBackbone",
    "FeatureConfig",
    "MemoryBank",
    "PatchCoreExpert",
    "PatchFeatureExtractor",
    "available_backbones",
    "calibrate",
    "fit_calibration",
    "greedy_coreset",
    "load_backbone",
    "nearest_distances",
    "open_expert",
    "register_backbone",
    "torch_module_backbone",
]
