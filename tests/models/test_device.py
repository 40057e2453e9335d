"""Device and dtype resolution: 'auto' picks bf16 on a CPU only for models checked in it, and only with
native bf16 products."""

from __future__ import annotations

import pytest
import torch

from riad_agent.errors import ConfigurationError
from riad_agent.models import device as device_module
from riad_agent.models.device import resolve_dtype


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cpu_is_bf16_only_when_asked_and_native(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: native)
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32  # hub models on a CPU keep fp32
    assert resolve_dtype("auto", cpu, cpu_bfloat16=True) == (torch.bfloat16 if native else torch.float32)
    # an explicit dtype always wins
    assert resolve_dtype("float32", cpu, cpu_bfloat16=True) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16


def test_unknown_dtype_is_a_typed_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_native_bf16_check_answers_a_bool() -> None:
    assert isinstance(device_module.cpu_has_native_bfloat16(), bool)
