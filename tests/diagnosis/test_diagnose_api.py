"""diagnose(): runs every registered rule; the Diagnosis is JSON-safe; the text reads well."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradientflow
from gradientflow._format import layer_list
from gradientflow.diagnosis import Diagnosis, Finding, diagnose
from gradientflow.diagnosis.rules import RULE_MODULES
from gradientflow.errors import GradientFlowError
from gradientflow.report.terminal import render
from gradientflow.trace import Trace
from tests.diagnosis.traces import chain, healthy


def test_every_registered_rule_runs() -> None:
    d = diagnose(healthy())
    assert d.healthy and d.findings == []
    expected = [r for r in RULE_MODULES if r != "through_time"]
    assert [r for r in d.meta["rules"] if r != "through_time"] == expected
    assert d.meta["recorded_steps"] == 60


def test_public_names() -> None:
    assert gradientflow.diagnose is diagnose
    assert gradientflow.Diagnosis is Diagnosis and gradientflow.Finding is Finding


def test_findings_sorted_and_json_safe() -> None:
    loss = np.full(40, 2.3)
    t = chain(0.14, depth=20, steps=40, loss=loss, rel_update=np.full(20, 1e-9))
    t.metrics["out_grad_norm"][30:, :5] = np.inf  # a non-finite value in the evidence path
    d = diagnose(t)
    kinds = [f.kind for f in d.findings]
    assert "vanishing" in kinds and "stagnation" in kinds
    ranks = [("info", "warning", "critical").index(f.severity) for f in d.findings]
    assert ranks == sorted(ranks, reverse=True)
    text = json.dumps(d.to_dict(), allow_nan=False)
    assert json.loads(text)["worst"] == "warning"  # sign 1 absent, 40 steps: both warnings


def test_rule_selection() -> None:
    t = chain(0.14, depth=20)
    assert [f.kind for f in diagnose(t, rules=["exploding"]).findings] == []
    custom = diagnose(t, rules=[lambda tr: [Finding("stagnation", "info", [], {}, "hi")]])
    assert custom.findings[0].message == "hi"
    with pytest.raises(GradientFlowError, match="no rule named 'vanish'"):
        diagnose(t, rules=["vanish"])
    with pytest.raises(GradientFlowError, match="expected a Trace"):
        diagnose({"not": "a trace"})  # type: ignore[arg-type]


def test_empty_trace() -> None:
    d = diagnose(Trace.build(["fc0", "fc1"], steps=[]))
    # an empty trace says nothing: unknown, not healthy (issue 14)
    assert d.verdict == "unknown" and not d.healthy and d.meta["first_step"] is None
    assert d.reason is not None and "empty" in d.reason
    assert d.to_dict()["verdict"] == "unknown"


def test_render_text() -> None:
    t = chain(0.14, depth=20, rel_update=np.array([1e-12] * 10 + [1e-3] * 10))
    text = render(diagnose(t), table="TABLE", extra=lambda f: ["prescription: x"])
    lines = text.splitlines()
    assert lines[0] == "Verdict: UNHEALTHY - gradients vanish toward the input (critical)."
    assert any(line.startswith("CRITICAL vanishing  layers: fc0, fc1") for line in lines)
    assert "  evidence: metric=out_grad_norm" in text and "per_layer_gain=0.14" in text
    assert "  remedies to try: swap_activation:relu" in text
    assert "  prescription: x" in text and text.endswith("TABLE")
    assert max(len(line) for line in lines) <= 100
    assert "\033[" not in text and "\033[1;31m" in render(diagnose(t), color=True)
    assert render(diagnose(healthy())).startswith("Verdict: healthy")


def test_layer_list() -> None:
    assert layer_list(["a", "b"]) == "a, b"
    assert layer_list([str(i) for i in range(10)]) == "0, 1, 2, 3, 4 ... 9 (10 layers)"
