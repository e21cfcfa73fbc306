"""torch.compile: the monitor names layers as in the user's model, records the same numbers as
on the eager model, and adds no graph break (nor any recompilation in steady state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow.schedule import Schedule

STEPS = 8
COLUMNS = ("grad_norm", "weight_norm", "update_norm", "rel_update")

dynamo = pytest.importorskip("torch._dynamo", reason="torch.compile (dynamo) is not available")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def _train(compile_: bool, watch_inner: bool = False) -> tuple[Any, list[tuple[int, int]]]:
    """Watched training; per step, (graph breaks, compiled graphs) added by that step.

    ``watch_inner``: the monitor is given the eager model while the loop calls its compiled
    wrapper (``compiled = torch.compile(model)``; ``watch(model, opt)``), so the monitor cannot
    know the forward is compiled until its hooks are traced."""
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
    model = _model()
    run: nn.Module = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 8, generator=gen), torch.randn(32, 4, generator=gen))] * STEPS
    added = []
    # full statistics every 3rd step: the activation probe would arm its hooks on steps 0, 3, 6
    watched = model if watch_inner else run
    with gradientflow.watch(watched, opt, schedule=Schedule(full_every=3)) as mon:
        for x, y in data:
            breaks = sum(counters["graph_break"].values())
            graphs = counters["stats"]["unique_graphs"]
            opt.zero_grad()
            loss = (run(x) - y).pow(2).mean()
            loss.backward()
            mon.log(loss=loss)
            opt.step()
            added.append(
                (
                    sum(counters["graph_break"].values()) - breaks,
                    counters["stats"]["unique_graphs"] - graphs,
                )
            )
    return mon.trace, added


@pytest.fixture(scope="module")
def runs() -> tuple[Any, Any, list[tuple[int, int]]]:
    eager, _ = _train(compile_=False)
    try:
        compiled, added = _train(compile_=True)
    except Exception as exc:  # no C++ compiler for inductor, an unsupported platform
        pytest.skip(f"torch.compile does not run here: {type(exc).__name__}: {exc}")
    return eager, compiled, added


def test_compiled_names_and_numbers_match_eager(runs: tuple[Any, Any, Any]) -> None:
    eager, compiled, _ = runs
    assert [layer.name for layer in compiled.layers] == ["0", "2", "4"]  # no "_orig_mod."
    assert compiled.meta["model"] == "Sequential"
    assert compiled.steps.tolist() == list(range(STEPS))
    for col in COLUMNS:
        a, b = compiled.metrics[col], eager.metrics[col]
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        assert np.allclose(a, b, rtol=1e-5, atol=0, equal_nan=True), col
    assert not np.isnan(compiled.metrics["grad_norm"]).any()
    assert compiled.meta["activation_statistics"].startswith("not measured: the model is compiled")
    assert np.isnan(compiled.metrics["out_rms"]).all()


def test_monitor_adds_no_graph_break_and_no_recompile(runs: tuple[Any, Any, Any]) -> None:
    _, _, added = runs
    assert sum(b for b, _ in added) == 0, added  # the unwatched model compiles to one graph
    assert added[0][1] == 1, added  # step 0: one graph (with the layer-order hooks)
    # step 1 recompiles once without those hooks; from then on, full steps included, nothing
    assert all(g == 0 for _, g in added[2:]), added


def test_compiled_wrapper_the_monitor_was_not_given_adds_no_graph_break(
    runs: tuple[Any, Any, Any],
) -> None:
    """The activation hooks are traced once, inert (they read no value), and never armed
    again: no graph break, one recompile at step 1 as above, then none; the same gradient and
    weight statistics as on the eager model."""
    eager = runs[0]
    try:
        trace, added = _train(compile_=True, watch_inner=True)
    except Exception as exc:  # the skip reason of the fixture above
        pytest.skip(f"torch.compile does not run here: {type(exc).__name__}: {exc}")
    assert sum(b for b, _ in added) == 0, added
    assert added[0][1] == 1 and all(g == 0 for _, g in added[2:]), added
    for col in COLUMNS:
        a, b = trace.metrics[col], eager.metrics[col]
        assert np.allclose(a, b, rtol=1e-5, atol=0, equal_nan=True), col
    assert trace.meta["activation_statistics"].startswith("not measured: the model is compiled")
    assert np.isnan(trace.metrics["out_rms"]).all()


def test_model_compiled_in_place_is_not_hooked() -> None:
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
    model = _model()
    model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(4, 8)).pow(2).mean().backward()
                opt.step()
    except Exception as exc:  # the skip reason of the fixture above
        pytest.skip(f"torch.compile does not run here: {type(exc).__name__}: {exc}")
    trace = mon.trace
    assert [layer.name for layer in trace.layers] == ["0", "2", "4"]
    assert trace.meta["layer_order"] == "first use in forward"
    assert sum(counters["graph_break"].values()) == 0
    assert (
        np.isnan(trace.metrics["out_rms"]).all() and not np.isnan(trace.metrics["grad_norm"]).any()
    )
