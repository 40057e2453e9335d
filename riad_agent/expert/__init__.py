"""The few-shot vision expert: PatchCore-style anomaly maps from normal reference images."""

from riad_agent.expert.bank import BankCache, MemoryBank, greedy_coreset, nearest_distances
from riad_agent.expert.calibration import Calibration, calibrate, fit_calibration
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.factory import open_expert
from riad_agent.expert.features import FeatureConfig, PatchFeatureExtractor

__all__ = [
    "BankCache",
    "Calibration",
    "ExpertConfig",
    "FeatureConfig",
    "MemoryBank",
    "PatchCoreExpert",
    "PatchFeatureExtractor",
    "calibrate",
    "fit_calibration",
    "greedy_coreset",
    "nearest_distances",
    "open_expert",
]
