"""print() and notebook display of Diagnosis, Finding, Trace, Preflight and TrialTable.

``str(x)`` is the command line's text; ``x._repr_html_()`` one self-contained fragment whose
style is scoped to it, with every outside name escaped.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gradientflow.cli import main
from gradientflow.diagnosis import diagnose
from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.report import plots
from gradientflow.report.html_display import SCOPE
from gradientflow.report.terminal import layer_table, render_finding
from gradientflow.trace import Trace
from gradientflow.trial.table import TrialRow, TrialTable

EVIL = "<script>alert(1)</script>"


def _vanishing_trace(n_layers: int = 8, steps: int = 30, name0: str = "fc0") -> Trace:
    """Each layer's gradient 1/10 of the next one's, a flat loss: vanishing and stagnation."""
    names = [name0, *(f"fc{i}" for i in range(1, n_layers))]
    grads = np.tile(10.0 ** np.arange(-n_layers + 1, 1), (steps, 1))
    return Trace.build(names, steps=range(steps), grad_norm=grads, loss=[2.3] * steps)


def _style_rules(html: str) -> list[str]:
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is not None
    return [r for r in style.group(1).split("}") if r.strip()]


def _check_fragment(html: str) -> None:
    assert html.startswith(f"<div class='{SCOPE}'><style>") and html.endswith("</div>")
    assert html.count("<style>") == 1
    for rule in _style_rules(html):
        selectors = rule.split("{", 1)[0]
        assert all(s.strip().startswith(f".{SCOPE}") for s in selectors.split(",")), rule
    low = html.lower()
    assert "<script" not in low and "http://" not in low and "https://" not in low
    assert "onerror=" not in low


def test_print_a_diagnosis_is_the_cli_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _vanishing_trace()
    diagnosis = diagnose(trace)
    text = str(diagnosis)
    assert text.startswith("Verdict: UNHEALTHY - gradients vanish toward the input (critical)")
    assert "evidence: " in text and "first_to_last=1.00e-07" in text
    assert "\n  prescription: add_batchnorm — BatchNorm" in text
    for finding in diagnosis.findings:
        assert str(finding) == render_finding(finding)
        assert str(finding) in text
    trace.save(tmp_path / "run")
    assert main(["show", str(tmp_path / "run"), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert text in out  # the same text, between the header and the per-layer table
    assert layer_table(trace) in out
    assert str(Diagnosis([])) == "Verdict: healthy - no warning or critical finding."


def test_print_a_finding_and_a_trace() -> None:
    f = Finding("exploding", "warning", ["a\x1b[2Jb"], {"ratio": 1e6}, "Gradients explode.")
    assert str(f).splitlines() == [
        "WARNING  exploding  layers: a\\x1b[2Jb",
        "  Gradients explode.",
        "  evidence: ratio=1.00e+06",
    ]
    t = Trace.build(
        ["in", "out"], steps=[3, 4], grad_norm=[[1e-9, 0.5], [2e-9, 0.25]], loss=[2.5, 0.125]
    )
    assert str(t).splitlines() == [
        "Trace: 2 layers, 2 recorded steps (steps 3-4). Loss 2.5 -> 0.125.",
        "",
        "Per layer (input to output, latest measured values):",
        "depth  layer  kind    grad norm  rel update  dead  saturated",
        "0      in     Linear  2.00e-09   -           -     -",
        "1      out    Linear  2.50e-01   -           -     -",
    ]
    assert str(Trace.build(["x"], steps=[])).startswith("Trace: 1 layer, 0 recorded steps.")


def test_a_diagnosis_and_a_finding_in_a_notebook() -> None:
    bad = Finding(
        "vanishing",
        "critical",
        [EVIL, "fc1"],
        {"first_to_last": 1e-18, EVIL: 1},
        f"msg {EVIL}",
        ["swap_activation:relu"],
    )
    d = Diagnosis([Finding("stagnation", "warning", ["fc1"], {}, "Flat loss."), bad])
    html = d._repr_html_()
    _check_fragment(html)
    assert "Critical: 2 problems found" in html
    assert html.index("vanishing") < html.index("stagnation")  # most severe first
    assert "first_to_last = 1e-18" in html and "<details class='evidence' open>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "First thing to try: <code>swap_activation:relu</code>" in html
    one = bad._repr_html_()
    _check_fragment(one)
    assert "first_to_last = 1e-18" in one and "stagnation" not in one
    healthy = Diagnosis([])._repr_html_()
    _check_fragment(healthy)
    assert "<h2>Healthy</h2>" in healthy


def test_a_trace_in_a_notebook_shows_its_plots_and_table() -> None:
    trace = _vanishing_trace(name0=EVIL)
    html = trace._repr_html_()
    _check_fragment(html)
    images = re.findall(r"<img id='plot-([\w-]+)'[^>]* src='data:image/png;base64,", html)
    assert images == ["profile", "heat-grad", "loss"]  # no activation data: no empty plot
    assert "8 layers" in html and "30 recorded steps" in html
    assert html.count("<tr") == 1 + 8  # header and one row per layer
    assert "&lt;script&gt;" in html
    dead = trace.metrics["in_dead_frac"]
    dead[-1] = np.linspace(0, 0.5, 8)
    with_dead = trace._repr_html_()
    assert "id='plot-activations'" in with_dead and "50%" not in with_dead  # table: 0.5


def test_a_trace_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "gradient_profile", missing)
    html = _vanishing_trace()._repr_html_()
    _check_fragment(html)
    assert "<img" not in html and "gradientflow[plots]" in html and "id='layer-table'" in html


def test_a_preflight_in_a_notebook() -> None:
    from gradientflow.demo import mlp
    from gradientflow.preflight import preflight

    pf = preflight(mlp(), torch.randn(64, 64))
    html = pf._repr_html_()
    _check_fragment(html)
    assert str(pf).startswith("Preflight of Sequential: 20 weight layers")  # the CLI's text
    assert "Preflight of Sequential: 20 weight layers, probe batch of 64" in html
    assert f"χ₁ = {pf.chi1:.3f}" in html  # the theory line, as printed
    assert "<span class='badge critical'>vanishing</span>" in html
    table = html[html.index("Per layer, on the probe batch") :]
    assert table.count("<tr>") == 1 + pf.depth
    assert f"<td>{pf.layers[0].sigma_w2:.3g}</td>" in table


def test_a_preflight_that_could_not_judge_is_not_healthy_in_a_notebook() -> None:
    from gradientflow.preflight import preflight

    pf = preflight(torch.nn.Sequential(torch.nn.Linear(8, 2)), torch.randn(16, 8))
    assert pf.verdict == "unknown" and pf.reason
    html = pf._repr_html_()
    _check_fragment(html)
    assert "Healthy" not in html and "Unknown" in html


def test_a_trial_table_in_a_notebook() -> None:
    rows = [
        TrialRow("baseline", lr=0.05, final_loss=2.3, best_loss=2.2, grad_ratio=1e-16),
        TrialRow(
            "add_batchnorm",
            lr=0.01,
            final_loss=0.25,
            best_loss=0.125,
            grad_ratio=0.75,
            findings=["stagnation"],
        ),
        TrialRow(EVIL, error=f"boom {EVIL}"),
    ]
    table = TrialTable(rows, meta={"optimizer": "SGD", "base_lr": 0.05})
    html = table._repr_html_()
    _check_fragment(html)
    body = html[html.index("<table>") :]
    names = re.findall(r"<tr><td class='name'>(.*?)</td>", body)
    assert names == ["add_batchnorm", "baseline", "&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert "<td>0.25</td><td>0.125</td>" in body and "<td>1e-16</td>" in body
    assert "stagnation" in body and "(error)" in body and "boom &lt;script&gt;" in html
    assert "id='plot-trial'" in html
    text = str(table)  # print(table): the terminal table, control characters escaped
    assert text.split()[:2] == ["remedy", "lr"]
    assert re.search(r"\nadd_batchnorm +0\.01 +0\.250 +0\.125 +- +7\.5e-01 +stagnation", text)
    assert "\x1b" not in str(TrialTable([TrialRow("a\x1b[2J", error="b\x1b")]))
    assert repr(TrialTable([])) == "TrialTable(0 rows, best=None)"
