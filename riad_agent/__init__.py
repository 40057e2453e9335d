"""riad-agent: an explainable industrial inspector for LLM agents.

Public API::

    from riad_agent import InspectionRequest, InspectionReport, Settings, inspect
"""

from riad_agent.errors import RiadError
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest, MultipleChoiceQuestion
from riad_agent.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "InspectionOptions",
    "InspectionReport",
    "InspectionRequest",
    "MultipleChoiceQuestion",
    "RiadError",
    "Settings",
    "__version__",
    "load_settings",
]
