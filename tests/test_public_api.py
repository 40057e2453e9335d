"""The public API: what ``riad_agent`` exports, and that importing it stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import riad_agent
from riad_agent import errors


def test_every_exported_name_exists() -> None:
    assert sorted(riad_agent.__all__) == riad_agent.__all__
    for name in riad_agent.__all__:
        assert getattr(riad_agent, name) is not None, name
    assert riad_agent.Inspector.__module__ == "riad_agent.inspector"


def test_every_error_class_is_exported() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.RiadError)
    }
    assert classes <= set(riad_agent.__all__)


def test_service_errors_share_one_base() -> None:
    for error in (
        errors.QueueFullError,
        errors.UnauthorizedError,
        errors.NotReadyError,
        errors.BodyTooLargeError,
    ):
        assert issubclass(error, errors.ServiceError) and issubclass(error, errors.RiadError)


def test_import_is_light_and_inspector_loads_on_first_use() -> None:
    probe = (
        "import sys, riad_agent;"
        "heavy = [m for m in ('riad_agent.inspector', 'langgraph', 'torch') if m in sys.modules];"
        "assert not heavy, heavy;"
        "from riad_agent import Inspector;"
        "assert 'riad_agent.inspector' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
