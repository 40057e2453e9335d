"""Int8 linear layers for the builtin model on x86 CPUs: close to fp32, shapes kept, gradients flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from riad_agent.errors import ConfigurationError
from riad_agent.models import device as device_module
from riad_agent.models.device import builtin_uses_int8
from riad_agent.models.int8 import DynamicInt8Linear, int8_matmul_available, quantise_linears

needs_int8 = pytest.mark.skipif(not int8_matmul_available(), reason="no x86 int8 kernels in this PyTorch")


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@needs_int8
def test_int8_linear_is_close_to_fp32_for_any_leading_shape() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    quantised = DynamicInt8Linear(linear, min_rows=1)
    for shape in [(64,), (5, 64), (2, 7, 64)]:
        x = torch.randn(*shape)
        out = quantised(x)
        assert out.shape == (*shape[:-1], 48) and out.dtype == torch.float32
        assert _relative_error(out, linear(x).detach()) < 0.05
    # one scale per row: a row a thousand times larger does not drown the others
    x = torch.randn(3, 64)
    x[0] *= 1e3
    out, exact = quantised(x), linear(x).detach()
    assert all(_relative_error(out[i], exact[i]) < 0.05 for i in range(3))


@needs_int8
def test_calls_with_few_rows_stay_in_fp32() -> None:
    linear = nn.Linear(64, 48)
    quantised = DynamicInt8Linear(linear, min_rows=8)
    few, many = torch.randn(7, 64), torch.randn(8, 64)
    with torch.no_grad():
        assert torch.equal(quantised(few), linear(few))
        assert not torch.equal(quantised(many), linear(many))
    assert DynamicInt8Linear(nn.Linear(16, 9000)).min_rows == 1  # wide (LM head): memory-bound, int8 always


@needs_int8
def test_gradients_reach_the_input() -> None:
    torch.manual_seed(1)
    linear = nn.Linear(32, 16, bias=False)
    quantised = DynamicInt8Linear(linear, min_rows=1)
    x = torch.randn(4, 32, requires_grad=True)
    quantised(x).pow(2).sum().backward()
    assert x.grad is not None
    reference = torch.randn(4, 32).copy_(x.detach()).requires_grad_(True)
    linear(reference).pow(2).sum().backward()
    assert reference.grad is not None
    assert _relative_error(x.grad, reference.grad) < 0.05


@needs_int8
def test_quantise_linears_replaces_the_linears_not_skipped() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4)))
    assert quantise_linears(model, skip=("0",)) == 0  # a name is skipped at every depth
    mlp = nn.ModuleDict({"up_proj": nn.Linear(8, 16), "down_proj": nn.Linear(16, 8)})
    assert quantise_linears(mlp) == 1 and isinstance(mlp["down_proj"], nn.Linear)  # massive activations: fp32
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4)))
    assert quantise_linears(model, skip=()) == 2
    assert isinstance(model[0], DynamicInt8Linear) and isinstance(model[2][0], DynamicInt8Linear)
    assert isinstance(model[2][1], nn.LayerNorm)
    assert model(torch.randn(40, 8)).shape == (40, 4)


def test_int8_is_used_when_asked_or_by_auto_on_a_cpu_without_native_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_module, "int8_matmul_available", lambda: True)
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: True)
    assert builtin_uses_int8("int8", cpu)
    assert not any(builtin_uses_int8(d, cpu) for d in ("auto", "float32", "bfloat16"))  # auto: bf16 there
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: False)
    assert builtin_uses_int8("auto", cpu)  # fp32 would miss the reasoned inspection's 3 s
    assert not builtin_uses_int8("auto", cuda) and not builtin_uses_int8("float32", cpu)
    with pytest.raises(ConfigurationError, match="CPU"):
        builtin_uses_int8("int8", cuda)
    monkeypatch.setattr(device_module, "int8_matmul_available", lambda: False)
    assert not builtin_uses_int8("auto", cpu)  # no x86 kernels (an ARM CPU): fp32
    with pytest.raises(ConfigurationError, match="int8 kernels"):
        builtin_uses_int8("int8", cpu)


def test_int8_is_not_a_dtype_for_hub_models() -> None:
    with pytest.raises(ConfigurationError, match="builtin"):
        device_module.resolve_dtype("int8", torch.device("cpu"))
