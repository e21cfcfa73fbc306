"""Terminal output (plain and rich) and the ``gradientflow report`` command."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from report_traces import diagnosis_for, vanishing

from gradientflow.cli import main
from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.report.terminal import render_diagnosis, render_table, sparkline, use_color

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_plain_diagnosis_has_verdict_findings_and_no_colour() -> None:
    t = vanishing()
    text = render_diagnosis(diagnosis_for(t), t, color=False)
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert lines[0] == "CRITICAL: 2 problems found"
    assert lines[1] == "6 layers, 12 recorded steps (steps 0-55)"
    assert lines[2].endswith("▁▂▄▅▇█")  # 10x per layer: evenly spaced on the log scale
    assert "[critical] vanishing in fc0, fc1, fc2, fc3" in lines
    assert "    try: swap_activation:relu, batchnorm" in lines
    assert "[warning] saturation in fc1, fc2" in lines
    healthy = render_diagnosis(Diagnosis([]), color=False)
    assert healthy == "HEALTHY: no vanishing or exploding gradients found"


def test_long_messages_wrap_to_100_columns() -> None:
    f = Finding("vanishing", "critical", [f"layer{i}" for i in range(20)], {}, "word " * 60, [])
    text = render_diagnosis(Diagnosis([f]), color=False)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "and 14 more" in text


def test_rich_output_is_coloured_and_does_not_interpret_markup_in_names() -> None:
    pytest.importorskip("rich")
    t = vanishing(["fc0", "[red]x[/red]", "fc2", "fc3", "fc4", "fc5"])
    text = render_diagnosis(diagnosis_for(t), t, color=True)
    assert ANSI.search(text)
    plain = ANSI.sub("", text)
    assert "CRITICAL: 2 problems found" in plain
    assert "[red]x[/red]" in plain
    table = ANSI.sub("", render_table(t, color=True))
    assert "[red]x[/red]" in table and "grad norm" in table and "2.1e-05" in table


def test_plain_table_columns() -> None:
    t = vanishing()
    lines = render_table(t, color=False).splitlines()
    assert lines[0].split() == [
        "#",
        "layer",
        "kind",
        "act",
        "flow",
        "grad",
        "norm",
        "dL/d(out)",
        "rel",
        "upd",
        "dead",
        "in",
        "sat",
        "in",
    ]
    first = lines[1].split()
    assert first[:4] == ["0", "fc0", "Linear", "-"] and first[5] == "2.1e-05"
    last = lines[-1].split()
    assert last[:5] == ["5", "fc5", "Linear", "sigmoid", "█"]
    assert last[-2:] == ["0.05", "0.1"]  # dead and saturated fractions of fc5's input


def test_empty_traces_render() -> None:
    from gradientflow.trace import Trace

    assert render_table(Trace.build([], steps=[]), color=False).split()[:2] == ["#", "layer"]
    assert render_table(Trace.build(["a"], steps=[]), color=False).splitlines()[1].split() == [
        "0",
        "a",
        "Linear",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]


def test_colour_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert use_color(True) and not use_color(False)
    assert not use_color(None, io.StringIO())  # not a TTY

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(None, Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(None, Tty())


def test_sparkline() -> None:
    assert sparkline([1e-8, 1e-4, 1.0, float("nan"), 0.0]) == "▁▅█  "
    assert sparkline([float("inf")]) == " "
    assert sparkline([3.0, 3.0]) == "██"


def test_report_command_writes_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = vanishing()
    run_dir = t.save(tmp_path / "run")
    assert (
        main(
            [
                "report",
                str(run_dir),
                "-o",
                str(tmp_path / "out.html"),
                "--tensorboard",
                str(tmp_path / "tb"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'out.html'}" in out
    text = (tmp_path / "out.html").read_text()
    assert "gradientflow report: run" in text and "id='plot-profile'" in text
    assert any((tmp_path / "tb").iterdir())
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "holds no gradientflow trace" in capsys.readouterr().err
