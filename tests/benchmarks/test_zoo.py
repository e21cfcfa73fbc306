"""The zoo benchmark is well-formed, and its scoring works on hand-made traces.

The full benchmark (real trainings) is a script, ``python -m benchmarks.zoo``, not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmarks.zoo import CASES, KINDS, LABELS
from benchmarks.zoo.baseline import RULE_KINDS, baseline, loss_not_decreasing
from benchmarks.zoo.case import Run
from benchmarks.zoo.report import table, update_doc
from benchmarks.zoo.score import score_cache, score_trace, totals
from benchmarks.zoo.train import train_case

from gradientflow import Trace
from gradientflow.trace import LayerInfo


def test_case_list_is_well_formed() -> None:
    assert len(CASES) >= 40
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    healthy = [c for c in CASES if c.label == "healthy"]
    assert len(healthy) * 2 == len(CASES)
    assert all(c.label in LABELS and c.summary and callable(c.run) for c in CASES)
    families = {c.family for c in CASES}
    assert {"mlp", "cnn", "transformer", "rnn", "gan", "finetune", "regression"} <= families


def test_every_kind_has_a_case_and_a_baseline_rule() -> None:
    sick = {c.label for c in CASES if c.label != "healthy"}
    assert sick == set(KINDS)
    covered = set().union(*RULE_KINDS.values())
    assert covered <= set(KINDS)


def _layers(n: int) -> list[LayerInfo]:
    return [LayerInfo(f"fc{j}", n_params=100, input_activation="sigmoid") for j in range(n)]


def _vanishing_trace() -> Trace:
    """10 sigmoid layers whose back-propagated gradient shrinks 7x a layer; loss flat."""
    r, n = 12, 10
    g = np.array([[0.14 ** (n - 1 - j) for j in range(n)]] * r)
    return Trace.build(_layers(n), steps=range(r), out_grad_norm=g, grad_norm=g * 0.1,
                       loss=[2.3] * r)  # fmt: skip


def _healthy_trace() -> Trace:
    r, n = 30, 3
    g = np.full((r, n), 0.5)
    loss = list(2.3 * np.exp(-np.arange(r) / 5.0) + 0.05)
    return Trace.build(_layers(n), steps=range(r), grad_norm=g, out_grad_norm=g, loss=loss)


def test_scoring_hand_made_traces() -> None:
    sick = score_trace("vanishing", _vanishing_trace())
    assert sick["ours"]["mark"] == "hit"
    # 0.14^9 * 0.1 / sqrt(100) ~ 2e-9 < 1e-7: SageMaker's VanishingGradient fires too, and
    # the flat loss trips LossNotDecreasing.
    assert sick["baseline"]["mark"] == "hit"
    assert {"VanishingGradient", "LossNotDecreasing"} <= set(sick["baseline"]["fired"])
    ok = score_trace("healthy", _healthy_trace())
    assert ok["baseline"]["mark"] == "ok" and ok["baseline"]["fired"] == {}


def test_baseline_exploding_tensor_and_loss_rule() -> None:
    t = _healthy_trace()
    t.scalars["loss"][7] = np.nan
    assert baseline(t)["ExplodingTensor"] is not None
    rising = Trace.build(["a"], steps=range(30), loss=[1.0 + 0.01 * k for k in range(30)])
    assert loss_not_decreasing(rising) is not None  # +10% over 10 steps > 5%
    falling = Trace.build(["a"], steps=range(30), loss=[0.9**k for k in range(30)])
    assert loss_not_decreasing(falling) is None


def test_train_and_score_round_trip(tmp_path: Path) -> None:
    from benchmarks.zoo.case import Case

    def fake(seed: int) -> Run:
        return Run(_vanishing_trace(), {"test_acc": 0.1}, True, "hand-made")

    case = Case("fake_vanishing", "vanishing", "mlp", "a hand-made trace", fake)
    record = train_case(case, tmp_path)
    assert record["verified"] and record["error"] is None
    assert json.loads((tmp_path / "fake_vanishing" / "label.json").read_text())["label"] == (
        "vanishing"
    )
    rows = score_cache(tmp_path, ["fake_vanishing"])
    tot = totals(rows)
    assert tot["pathological"] == 1 and tot["ours"]["hits"] == 1
    assert tot["ours"]["per_kind"]["vanishing"] == {"runs": 1, "hits": 1}
    assert "fake_vanishing" in table(rows, tot)
    # the docs' table: seed 0's totals, then one line per held-out seed
    doc = "intro\n<!-- zoo-table:begin -->\nold\n<!-- zoo-table:end -->\nrest\n"
    results = {"generated": "t0", "totals": tot}
    held = {"generated": "t2", "totals": totals([*rows, {**rows[0], "verified": False}])}
    text = update_doc(doc, results, {2: held})
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
    assert "| &nbsp;&nbsp;vanishing | 1 / 1 | 1 / 1 |" in text
    assert (
        "* seed 2 (`results-seed-2.json`, t2): false alarms 0 / 0, caught 1 / 1; SageMaker "
        "defaults 0 / 0, 1 / 1; left out (outcome not verified): fake_vanishing"
    ) in text


def test_a_failing_case_is_recorded_not_hidden(tmp_path: Path) -> None:
    from benchmarks.zoo.case import Case

    def broken(seed: int) -> Run:
        raise RuntimeError("boom")

    record = train_case(Case("broken", "healthy", "mlp", "raises", broken), tmp_path)
    assert not record["verified"] and "boom" in record["error"]
    tot = totals(score_cache(tmp_path, ["broken"]))
    assert tot["scored"] == 0 and tot["left_out"] == ["broken"]


@pytest.mark.parametrize("label", ["healthy", "stagnation"])
def test_marks(label: str) -> None:
    from benchmarks.zoo.score import mark

    assert mark(label, []) == ("ok" if label == "healthy" else "miss")
    assert mark(label, ["stagnation"]) == ("FALSE-ALARM" if label == "healthy" else "hit")
