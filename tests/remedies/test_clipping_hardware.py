"""clip_gradients against a hand-clipped reference; faster_hardware's choice and wrapper."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import FasterModel, clip_gradients, faster_hardware
from tests.remedies.helpers import same, snapshot


def _grads(model: nn.Module, scale: float) -> None:
    torch.manual_seed(1)
    model.zero_grad()
    (model(torch.randn(8, 4)).pow(2).sum() * scale).backward()


def test_clipped_step_equals_the_formula() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    clipper = clip_gradients(0.5).attach(opt)
    _grads(model, 100.0)
    raw = [p.grad.detach().clone() for p in model.parameters()]
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in raw))
    opt.step()
    assert norm > 0.5 and clipper.last_norm == pytest.approx(norm, rel=1e-5)
    for p, b, g in zip(model.parameters(), before, raw, strict=True):
        # g <- c g / ||g||, then w <- w - lr g
        assert torch.allclose(p.detach(), b - 0.1 * 0.5 * g / norm, atol=1e-6)
    assert (clipper.clipped, clipper.steps) == (1, 1)


def test_small_gradients_untouched_and_detach_stops_clipping() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    clipper = clip_gradients(1e6).attach(opt)
    _grads(model, 1.0)
    g = model.weight.grad.clone()
    opt.step()
    assert clipper.clipped == 0 and torch.equal(model.weight.grad, g)
    clipper.detach()
    _grads(model, 1e6)
    opt.step()
    assert clipper.steps == 1  # no longer called


def test_clip_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"max_norm must be a positive finite number"):
        clip_gradients(0.0)
    with pytest.raises(GradientFlowError, match=r"expected a torch.optim.Optimizer"):
        clip_gradients(1.0).attach("sgd")  # type: ignore[arg-type]


def test_faster_hardware_on_cpu_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    snap = snapshot(model)
    fast = faster_hardware(model, device="cpu", verbose=False)
    assert isinstance(fast, FasterModel) and same(model, snap)
    assert fast.choice == {
        "device": "cpu",
        "why": "asked for",
        "autocast": "none (float32)",
        "compile": False,
    }
    x = torch.randn(3, 4)
    assert torch.allclose(fast(x), model(x))
    loss = fast(x).sum()
    loss.backward()
    assert fast.model[0].weight.grad is not None


def test_faster_hardware_reports_its_choice(capsys: pytest.CaptureFixture[str]) -> None:
    fast = faster_hardware(nn.Linear(2, 2))
    err = capsys.readouterr().err
    assert f"device {fast.choice['device']}" in err and "autocast" in err
    with pytest.raises(GradientFlowError, match=r"device must be cuda, mps or cpu"):
        faster_hardware(nn.Linear(2, 2), device="tpu")


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.fc(x)
        return {"logits": logits}, (logits,), Pair(logits, logits)


class Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


def test_autocast_outputs_come_back_in_float32_in_dicts_too() -> None:
    # FasterModel as faster_hardware builds it on a bf16 GPU, here with the CPU's bf16 autocast
    torch.manual_seed(0)
    model = _DictOut()
    fast = FasterModel(model, "cpu", torch.bfloat16, None, {})
    x = torch.randn(2, 4)
    as_dict, as_tuple, pair = fast(x)
    assert as_dict["logits"].dtype == as_tuple[0].dtype == pair.b.dtype == torch.float32
    assert isinstance(pair, Pair)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model.fc(x).float()
    assert torch.equal(as_dict["logits"], expected)
    outputs = pytest.importorskip("transformers.modeling_outputs")

    class HF(nn.Module):
        def forward(self, x: torch.Tensor) -> Any:
            return outputs.CausalLMOutput(logits=model.fc(x))

    back = FasterModel(HF(), "cpu", torch.bfloat16, None, {})(x)
    assert isinstance(back, outputs.CausalLMOutput) and back.logits.dtype == torch.float32
    assert back["logits"] is back.logits and torch.equal(back.logits, expected)
