"""The nonfinite rule: first step and layer of NaN/Inf; NaN that means "not measured" is not."""

from __future__ import annotations

import numpy as np

from gradientflow.diagnosis.rules import nonfinite
from gradientflow.trace import Trace
from tests.diagnosis.traces import healthy

NAMES = ["fc0", "fc1", "fc2"]


def _trace(n: int = 10, **cols: object) -> Trace:
    base = {
        "grad_norm": np.ones((n, 3)),
        "global_grad_norm": np.full(n, 1.7),
        "loss": np.full(n, 2.0),
        "full": np.ones(n),
    }
    base.update(cols)  # type: ignore[arg-type]
    return Trace.build(NAMES, steps=range(n), **base)


def test_nan_from_a_step_on_is_critical() -> None:
    g, glob, loss = np.ones((10, 3)), np.full(10, 1.7), np.full(10, 2.0)
    g[6:] = np.nan
    glob[6:] = np.nan
    loss[6:] = np.nan
    cnt = np.zeros((10, 3))
    cnt[6:] = 100
    [f] = nonfinite.rule(_trace(grad_norm=g, global_grad_norm=glob, loss=loss, nonfinite=cnt))
    ev = f.evidence
    assert f.severity == "critical" and ev["first_step"] == 6 and ev["persists"]
    assert ev["first_loss_step"] == 6 and ev["bad_steps"] == 4
    assert f.layers == NAMES and "step 6" in f.message
    assert f.remedies[0] == "lower_lr"


def test_inf_in_one_layer_that_recovers_is_a_warning() -> None:
    g = np.ones((10, 3))
    g[3, 2] = np.inf
    glob = np.full(10, 1.7)
    glob[3] = np.inf
    [f] = nonfinite.rule(_trace(grad_norm=g, global_grad_norm=glob))
    assert f.severity == "warning" and f.layers == ["fc2"] and not f.evidence["persists"]


def test_nan_weights_are_critical() -> None:
    w = np.full((10, 3), 4.0)
    w[8:, 1] = np.nan
    [f] = nonfinite.rule(_trace(weight_norm=w))
    assert f.severity == "critical" and f.evidence["first_weight_step"] == 8


def test_unmeasured_nan_is_not_nonfinite() -> None:
    # weight norms measured on full steps only (every 5th): NaN elsewhere means "not measured"
    w = np.full((10, 3), np.nan)
    w[::5] = 4.0
    full = np.zeros(10)
    full[::5] = 1
    loss = np.full(10, np.nan)  # loss never logged
    assert nonfinite.rule(_trace(weight_norm=w, full=full, loss=loss)) == []
    assert nonfinite.rule(healthy()) == []


def test_a_layer_without_gradient_at_one_step_is_not_nan() -> None:
    g = np.ones((10, 3))
    g[4, 0] = np.nan  # .grad was None for that layer at step 4; the global norm is fine
    assert nonfinite.rule(_trace(grad_norm=g)) == []


def test_grad_scaler_skips() -> None:
    glob = np.full(100, 1.7)
    skipped = np.zeros(100)
    glob[[10, 50]] = np.inf
    skipped[[10, 50]] = 1
    [f] = nonfinite.rule(
        _trace(100, global_grad_norm=glob, skipped=skipped, grad_norm=np.ones((100, 3)))
    )
    assert f.severity == "info" and f.evidence["skipped_steps"] == 2
    glob[::4] = np.inf
    skipped[::4] = 1
    [f] = nonfinite.rule(
        _trace(100, global_grad_norm=glob, skipped=skipped, grad_norm=np.ones((100, 3)))
    )
    assert f.severity == "warning"
