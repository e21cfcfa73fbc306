"""The HTML report: escaping, self-contained, verdict first, every plot a valid image."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest

import gradientflow.diagnosis
from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.errors import GradientFlowError
from gradientflow.report.html import render_html, write_html
from gradientflow.trace import Trace
from tests.report.traces import diagnosis_for, vanishing

pytest.importorskip("matplotlib")

EVIL = "<script>alert('pwned')</script>"


def _images(text: str) -> dict[str, bytes]:
    found = re.findall(r"<img id='plot-([\w-]+)'[^>]*src='data:image/png;base64,([^']+)'", text)
    return {pid: base64.b64decode(data) for pid, data in found}


class _Remedy:
    name = "swap_activation:relu <b>"
    why = "sigmoid' <= 0.25 & shrinks the gradient"


def test_names_from_the_model_are_escaped(tmp_path: Path) -> None:
    t = vanishing(["fc0", EVIL, "fc2", 'x" onmouseover="alert(1)', "<img src=x onerror=y>"])
    t.meta["model"] = "<b>MyNet</b>"
    diag = Diagnosis(
        [Finding("vanishing", "critical", [EVIL], {"<k>": 1.0}, f"{EVIL} vanishes", [EVIL])]
    )
    text = write_html(
        t,
        tmp_path / "r.html",
        diag,
        [_Remedy(), {"name": EVIL, "why": EVIL}],
        trial=[{"name": EVIL, "final_loss": 1.0}],
        title=EVIL,
    ).read_text()
    assert not re.search(r"<script", text, re.IGNORECASE)
    assert "<img src=x" not in text and "<b>MyNet" not in text
    assert 'onmouseover="alert' not in text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text
    assert "swap_activation:relu &lt;b&gt;" in text
    assert "sigmoid&#x27; &lt;= 0.25 &amp; shrinks" in text


def test_report_is_self_contained_and_forbids_scripts(tmp_path: Path) -> None:
    t = vanishing(rnn=True)
    text = render_html(t, diagnosis_for(t))
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for attr in re.findall(r"""(?:src|href)\s*=\s*['"]?([^'" >]+)""", text):
        assert attr.startswith("data:image/png;base64,"), attr
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "http://" not in text and "https://" not in text


def test_verdict_comes_first_then_findings_plots_and_table(tmp_path: Path) -> None:
    from matplotlib.image import imread

    t = vanishing(rnn=True)
    text = write_html(t, tmp_path / "deep" / "r.html", diagnosis_for(t)).read_text()
    order = [
        text.index(s) for s in ("id='verdict'", "id='findings'", "id='plots'", "id='layer-table'")
    ]
    assert order == sorted(order)
    assert "Critical: 2 problems found" in text
    assert "Gradients vanish toward the input: fc0 gets 1e-5 of fc5." in text
    images = _images(text)
    assert sorted(images) == [
        "activations",
        "heat-grad",
        "heat-update",
        "loss",
        "profile",
        "recurrent",
    ]
    for data in images.values():
        pixels = imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400 and pixels.std() > 0.05
    assert text.count("<tr class='flagged'>") == 4  # fc0..fc3 named by the findings


def test_layer_table_shows_latest_values(tmp_path: Path) -> None:
    t = vanishing()
    text = render_html(t, Diagnosis([]), include_plots=False)
    rows = re.findall(
        r"<tr(?: class='flagged')?><td>(\d+)</td><td class='name'>([^<]*)</td>"
        r"<td class='text'>Linear</td><td class='text'><span[^>]*></span></td><td>([^<]*)</td>",
        text,
    )
    assert [(int(d), n) for d, n, _ in rows] == [(i, f"fc{i}") for i in range(6)]
    expected = 10.0 ** np.arange(-5, 1) * 2.1  # last row: (1 + 11/10)
    np.testing.assert_allclose([float(g) for _, _, g in rows], expected, rtol=1e-2)
    assert "Healthy" in text
    widths = [int(w) for w in re.findall(r"class='bar' style='width:(\d+)px'", text)]
    assert widths == [4, 20, 36, 52, 68, 84]  # 10x per layer: even steps on the log scale
    assert "(frozen)" not in text
    frozen = Trace.build(["a", "b"], steps=[0], grad_norm=[[1.0, 2.0]])
    frozen.layers[0].trainable = False  # as the terminal table: the frozen layer says so
    html = render_html(frozen, Diagnosis([]), include_plots=False)
    assert "<td class='name'>a <span class='muted'>(frozen)</span></td>" in html
    assert "<td class='name'>b</td>" in html


def test_diagnosis_defaults_to_gradientflow_diagnose(monkeypatch: pytest.MonkeyPatch) -> None:
    t = vanishing()
    seen: list[object] = []

    def fake(trace: object) -> Diagnosis:
        seen.append(trace)
        return Diagnosis([Finding("exploding", "warning", ["fc5"], {}, "Boom.", [])])

    monkeypatch.setattr(gradientflow.diagnosis, "diagnose", fake, raising=False)
    text = render_html(t, include_plots=False)
    assert seen == [t] and "Warning: 1 problem found" in text and "Boom." in text


def test_failing_or_missing_diagnosis_still_writes_a_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(trace: object) -> Diagnosis:
        raise ValueError("rule bug")

    monkeypatch.setattr(gradientflow.diagnosis, "diagnose", broken, raising=False)
    with pytest.warns(RuntimeWarning, match="rule bug"):
        text = render_html(vanishing(), include_plots=False)
    assert "No verdict" in text and "ValueError: rule bug" in text
    monkeypatch.delattr(gradientflow.diagnosis, "diagnose", raising=False)
    text = render_html(vanishing(), no_verdict_reason="not asked", include_plots=False)
    assert "No verdict" in text and "not asked" in text and "plot-" not in text


def test_trial_section_and_bad_arguments(tmp_path: Path) -> None:
    t = vanishing()
    rows = [
        {"name": "baseline", "final_loss": 2.3, "metric": 0.1, "grad_ratio": 1e-18},
        {"name": "relu", "final_loss": 0.2, "metric": 0.9, "grad_ratio": 1.0},
    ]
    text = render_html(t, Diagnosis([]), trial=rows)
    assert "plot-trial" in text and "<td class='name'>relu</td><td>0.2</td>" in text
    from gradientflow.trace import Trace

    empty = render_html(Trace.build(["a"], steps=[]), Diagnosis([]))
    assert "holds no recorded steps" in empty and "<img" not in empty
    with pytest.raises(GradientFlowError, match="is a folder"):
        write_html(t, tmp_path, Diagnosis([]))
    with pytest.raises(GradientFlowError, match="must be a Trace"):
        render_html({"not": "a trace"})  # type: ignore[arg-type]
