"""step(closure) and optimizer wrappers: the gradients recorded are the step's own.

A closure runs forward and backward *inside* ``optimizer.step``; the references here are taken
inside the closure, right after its backward (its first call for LBFGS), and compared with the
recorded per-layer norms at every step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import GradientFlowError, Schedule
from gradientflow.stepping import unwrap_optimizer
from tests.integrations.grad_reference import GradSnapshots, assert_matches

STEPS = 8


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    )


def _train_with_closure(
    make_opt: Callable[[nn.Module], torch.optim.Optimizer], seed: int
) -> tuple[gradientflow.Monitor, GradSnapshots, list[float], list[int]]:
    torch.manual_seed(seed)
    model = _mlp()
    opt = make_opt(model)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    ref = GradSnapshots(model)
    first_losses: list[float] = []
    calls: list[int] = []
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for step in range(STEPS):
            xb, yb = x[step % 4 :: 4], y[step % 4 :: 4]
            state = {"calls": 0}

            def closure(
                xb: torch.Tensor = xb, yb: torch.Tensor = yb, state: dict[str, int] = state
            ) -> torch.Tensor:
                opt.zero_grad()
                loss = (model(xb) - yb).pow(2).mean()
                loss.backward()
                if state["calls"] == 0:  # the gradient at the current weights
                    ref.snap()
                    ref.close_step()
                    first_losses.append(float(loss.detach()))
                state["calls"] += 1
                return loss

            opt.step(closure)
            calls.append(state["calls"])
    return mon, ref, first_losses, calls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closure_sgd_records_the_steps_own_gradients(seed: int) -> None:
    mon, ref, losses, _ = _train_with_closure(
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), seed
    )
    trace = mon.trace
    assert trace.n_records == STEPS
    assert_matches(trace.metrics["grad_norm"], ref.per_layer(trace.layer_names))
    # the closure's loss is the step's loss when none was logged
    np.testing.assert_allclose(trace.scalars["loss"], losses, rtol=1e-6)
    assert np.all(np.isfinite(trace.metrics["update_norm"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbfgs_records_the_first_closure_call(seed: int) -> None:
    mon, ref, losses, calls = _train_with_closure(
        lambda m: torch.optim.LBFGS(m.parameters(), lr=0.5, max_iter=4), seed
    )
    assert max(calls) > 1  # LBFGS evaluated the closure several times per step
    trace = mon.trace
    assert trace.n_records == STEPS
    assert_matches(trace.metrics["grad_norm"], ref.per_layer(trace.layer_names))
    np.testing.assert_allclose(trace.scalars["loss"], losses, rtol=1e-6)


def test_closure_passed_by_keyword_and_logged_loss_wins() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 6)
    with gradientflow.watch(model, opt) as mon:
        for _ in range(3):

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                return loss

            mon.log(loss=7.0)
            opt.step(closure=closure)
    trace = mon.trace
    assert trace.scalars["loss"].tolist() == [7.0, 7.0, 7.0]
    assert np.all(np.isfinite(trace.metrics["grad_norm"]))  # step 0 is not a stale NaN


class _Wrapped:
    """A wrapper in the manner of accelerate's AcceleratedOptimizer (not initialized as an
    Optimizer, holds the real one in ``.optimizer``, delegates ``step``)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(self, closure: Callable[[], float] | None = None) -> None:
        self.optimizer.step(closure)


def test_wrapped_optimizers_are_unwrapped() -> None:
    accelerate = pytest.importorskip("accelerate")
    model = _mlp()
    inner = torch.optim.Adam(model.parameters(), lr=1e-3)
    wrapped = accelerate.Accelerator(cpu=True).prepare(inner)
    assert type(wrapped).__name__ == "AcceleratedOptimizer"
    assert unwrap_optimizer(wrapped) is inner
    assert unwrap_optimizer(_Wrapped(_Wrapped(inner))) is inner
    x = torch.randn(8, 6)
    with gradientflow.watch(model, wrapped) as mon:
        for _ in range(3):
            inner.zero_grad()
            model(x).pow(2).mean().backward()
            wrapped.step()
    assert mon.trace.n_records == 3


def test_lightning_optimizer_is_unwrapped() -> None:
    core = pytest.importorskip("lightning.pytorch.core.optimizer")
    inner = torch.optim.SGD(_mlp().parameters(), lr=0.1)
    assert unwrap_optimizer(core.LightningOptimizer(inner)) is inner


def test_a_wrapper_without_an_optimizer_is_one_clear_error() -> None:
    class Broken(torch.optim.Optimizer):
        def __init__(self) -> None:  # never calls Optimizer.__init__: no step hooks
            pass

    with pytest.raises(GradientFlowError, match=r"must be a torch\.optim\.Optimizer"):
        gradientflow.watch(_mlp(), Broken())  # type: ignore[arg-type]
    with pytest.raises(GradientFlowError, match="got <class 'str'>"):
        gradientflow.watch(_mlp(), "sgd")  # type: ignore[arg-type]
