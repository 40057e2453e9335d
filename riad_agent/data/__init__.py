"""Licence-clean procedural data: synthetic products with synthetic defects and exact masks."""

from riad_agent.data.synthetic import (
    CATEGORIES,
    CATEGORY_POSE,
    DEFECTS,
    POSE_CATEGORIES,
    POSE_DEFECTS,
    SyntheticSample,
    generate_sample,
    write_mvtec_layout,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_POSE",
    "DEFECTS",
    "POSE_CATEGORIES",
    "POSE_DEFECTS",
    "SyntheticSample",
    "generate_sample",
    "write_mvtec_layout",
]
