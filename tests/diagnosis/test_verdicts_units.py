"""Issue 14 on hand-made traces: unknown verdicts, NaN handled first, evidence without NaN,
block-to-block comparisons, spikes judged against the loss, the latest recurrent state."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from gradientflow.commands.diagnose import emit
from gradientflow.diagnosis import diagnose
from gradientflow.diagnosis.depth import block_profile, block_stack
from gradientflow.diagnosis.rules import exploding, through_time, vanishing, weights_to_zero
from gradientflow.trace import LayerInfo, Trace


def _args(fail_on: str | None) -> argparse.Namespace:
    return argparse.Namespace(json=True, no_color=True, fail_on=fail_on)


def test_unknown_verdict_exits_non_zero_under_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    t = Trace.build(["fc0", "fc1"], steps=[0, 1], meta={"recording_error": "complex parameter"})
    d = diagnose(t)
    assert d.verdict == "unknown" and d.reason == "the recording failed: complex parameter"
    assert emit(d, t, _args("critical")) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unknown" and doc["healthy"] is False
    assert emit(d, t, _args(None)) == 0
    healthy = Trace.build(["fc0"], steps=[0, 1], grad_norm=[[1.0], [1.0]])
    assert diagnose(healthy).verdict == "healthy"
    assert emit(diagnose(healthy), healthy, _args("warning")) == 0


def test_nan_weights_are_not_zero_weights() -> None:
    n = 60
    zero = np.full((n, 1), 0.02)
    zero[30:] = 1.0  # the probe counts NaN weights as "not large", i.e. near zero
    norm = np.full((n, 1), 5.0)
    norm[30:] = np.nan
    g = np.ones((n, 1))
    g[30:] = np.nan
    t = Trace.build(
        ["fc"], steps=range(n), weight_norm=norm, zero_frac=zero, grad_norm=g,
        nonfinite=np.where(np.isnan(g), 3.0, 0.0), global_grad_norm=g[:, 0],
    )  # fmt: skip
    assert weights_to_zero.rule(t) == []
    kinds = {f.kind: f.severity for f in diagnose(t).findings}
    assert kinds == {"nonfinite": "critical"}


def test_nonfinite_from_the_first_record_is_critical() -> None:
    # one bad record out of ten, the first: the run never computed a finite step
    g = np.ones((10, 2))
    g[0] = np.inf
    t = Trace.build(["a", "b"], steps=range(10), grad_norm=g, global_grad_norm=g[:, 0])
    [f] = diagnose(t).of_kind("nonfinite")
    assert f.severity == "critical" and f.evidence["from_start"] is True


def test_sign1_read_where_measured_never_nan() -> None:
    # rel_update measured at steps 0 and 50 only; the recent window (steps 40-59) holds one
    n, depth = 60, 6
    rel = np.full((n, depth), np.nan)
    rel[[0, 50]] = [1e-9, 1e-9, 1e-6, 1e-4, 1e-3, 1e-3]
    g = np.tile(0.1 ** np.arange(depth)[::-1], (n, 1))
    t = Trace.build([f"fc{j}" for j in range(depth)], steps=range(n), out_grad_norm=g,
                    rel_update=rel)  # fmt: skip
    [f] = vanishing.rule(t)
    ev = f.evidence
    assert ev["sign1_window"] == "step 50"
    assert ev["sign1_ratio"] == pytest.approx(1e-9 / 1e-3)
    assert f.severity == "critical"  # the lower layers do not move: no Adam downgrade
    flat = json.dumps(f.to_dict())
    assert "nan" not in flat.lower()


def test_block_stack_compares_block_to_block() -> None:
    names = [f"enc.layer.{i}.{s}" for i in range(4) for s in ("q", "k", "v", "ff")]
    layers = [LayerInfo("emb", kind="Embedding"), *map(LayerInfo, names), LayerInfo("head")]
    prefix, blocks = block_stack(Trace.build(layers, steps=[0]))  # type: ignore[misc]
    assert prefix == "enc.layer" and len(blocks) == 4 and sorted(blocks[0]) == ["ff", "k", "q", "v"]
    # q and k are tiny *within* every block (parallel branches), the blocks themselves equal
    per = {"q": 1e-5, "k": 1e-5, "v": 1e-2, "ff": 1.0}
    row = [1.0] + [per[s] for _ in range(4) for s in ("q", "k", "v", "ff")] + [10.0]
    t = Trace.build(layers, steps=range(3), grad_norm=[row] * 3)
    assert vanishing.rule(t) == []
    rel = block_profile(np.array(row), blocks)
    np.testing.assert_allclose(rel, 1.0)
    # halving per block: first/last = 1/8 exactly, geometric mean over the 4 parameters
    row2 = [1.0] + [per[s] * 2.0**i for i in range(4) for s in ("q", "k", "v", "ff")] + [10.0]
    assert block_profile(np.array(row2), blocks)[0] == pytest.approx(1 / 8)


def test_gradient_jump_with_its_batch_loss_is_no_spike() -> None:
    rng = np.random.default_rng(0)
    n = 80
    loss = 0.003 * np.exp(rng.normal(0, 0.2, n))
    loss[[30, 55]] *= 40  # a batch with a confidently wrong sample
    g = 30.0 * loss  # a cross-entropy near 0: the gradient follows the loss
    t = Trace.build(["a", "b", "c"], steps=range(n), loss=loss, global_grad_norm=g)
    assert exploding.rule(t) == []
    g2 = g.copy()
    g2[55] *= 40  # the same jump with a steady loss is a spike
    [f] = exploding.rule(Trace.build(["a", "b", "c"], steps=range(n), loss=loss,
                                     global_grad_norm=g2))  # fmt: skip
    assert f.evidence["spike"]["step"] == 55 and f.evidence["spike"]["max_jump"] > 10


def test_vanishing_through_time_judged_on_the_latest_sample() -> None:
    old = 0.5 ** np.arange(30)[::-1]  # horizon 9
    new = 0.95 ** np.arange(30)[::-1]  # reaches the whole sequence
    extras = {
        "bptt/rnn/gain": np.stack([old] * 4 + [new]),
        "bptt/rnn/steps": np.arange(5) * 50,
        "bptt/rnn/kind": np.array(["LSTM"]),
    }
    t = Trace.build(["rnn", "head"], steps=[0], extras=extras)
    assert [f.kind for f in through_time.rule(t)] == []
    extras["bptt/rnn/gain"] = np.stack([new] * 4 + [old])
    [f] = through_time.rule(Trace.build(["rnn", "head"], steps=[0], extras=extras))
    assert f.kind == "vanishing_through_time" and f.evidence["trend"] == [29, 29, 29, 29, 9]


def test_exploding_through_time_at_ten_fold_growth() -> None:
    grow = 1.13 ** np.arange(40)[::-1]  # first step 1.13^39 = 117x the last one's
    extras = {"bptt/rnn/gain": grow[None, :], "bptt/rnn/steps": np.array([0]),
              "bptt/rnn/kind": np.array(["RNN_RELU"])}  # fmt: skip
    [f] = through_time.rule(Trace.build(["rnn", "head"], steps=[0], extras=extras))
    assert f.kind == "exploding_through_time" and f.severity == "warning"
    assert f.evidence["first_over_last"] == pytest.approx(1.13**39)
    short = {**extras, "bptt/rnn/gain": grow[None, -8:]}  # 2.3x over 8 steps: healthy
    assert through_time.rule(Trace.build(["rnn", "head"], steps=[0], extras=short)) == []
    assert math.isclose(1.13**7, 2.35, rel_tol=0.01)


def test_a_trace_without_any_gradient_norm_is_unknown_not_healthy() -> None:
    """60 records whose grad_norm is NaN everywhere (nothing measured) or negative (no norm
    is) cannot be judged: "unknown" with the reason, never "healthy". A run whose gradients
    were counted non-finite from its first step stays unhealthy."""
    from gradientflow import Trace

    layers = ["a", "b", "c"]
    nothing = Trace.build(layers, grad_norm=np.full((60, 3), np.nan), loss=np.full(60, np.nan))
    d = diagnose(nothing)
    assert d.verdict == "unknown" and not d.healthy and "no gradient norm" in (d.reason or "")
    negative = Trace.build(layers, grad_norm=np.full((60, 3), -1.0), loss=np.linspace(3, 1, 60))
    assert diagnose(negative).verdict == "unknown"
    counted = Trace.build(
        layers,
        grad_norm=np.full((60, 3), np.nan),
        nonfinite=np.full((60, 3), 5.0),
        loss=np.full(60, np.nan),
    )
    assert diagnose(counted).verdict == "unhealthy"
