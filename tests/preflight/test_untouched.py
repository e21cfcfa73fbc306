"""The model is left exactly as it was: weights, buffers, modes, RNG, .grad, hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.preflight import preflight


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(16, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 4),
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("train", [True, False])
def test_weights_buffers_mode_and_rng_are_restored(train: bool) -> None:
    model = _model().train(train)
    model[4].eval()  # a mixed mode must survive too
    before = _state(model)
    modes = [m.training for m in model.modules()]
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    rng = torch.get_rng_state()
    pf = preflight(model, x, nn.CrossEntropyLoss(), y)
    assert pf.depth == 3
    after = _state(model)
    assert before.keys() == after.keys()
    for k in before:  # running_mean, running_var, num_batches_tracked included
        assert torch.equal(before[k], after[k]), k
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def test_existing_grads_and_user_hooks_are_kept() -> None:
    model = _model()
    model(torch.randn(8, 16)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    calls: list[int] = []
    model[0].register_forward_hook(lambda m, i, o: calls.append(1))
    preflight(model, torch.randn(8, 16))
    assert calls  # the user's hook fired
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert all(len(m._forward_hooks) == (1 if m is model[0] else 0) for m in model.modules())


def test_bad_input_is_a_clear_error_and_leaves_no_hooks() -> None:
    model = _model()
    with pytest.raises(GradientFlowError, match=r"must be an nn\.Module"):
        preflight("model", torch.randn(2, 16))  # type: ignore[arg-type]
    with pytest.raises(GradientFlowError, match="forward/backward pass on example_input raised"):
        preflight(model, torch.randn(8, 15))
    with pytest.raises(GradientFlowError, match="scalar tensor"):
        preflight(model, torch.randn(8, 16), lambda out: out)
    assert all(not m._forward_hooks for m in model.modules())


def test_nonfinite_weights_are_a_critical_finding() -> None:
    model = _model()
    with torch.no_grad():
        model[4].weight[0, 0] = float("nan")
    pf = preflight(model, torch.randn(8, 16))
    assert pf.findings[0].kind == "nonfinite" and pf.findings[0].severity == "critical"
