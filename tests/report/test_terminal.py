"""The terminal text (report/terminal.py): what the CLI prints and Monitor.summary() returns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from gradientflow.cli import main
from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.report import terminal
from gradientflow.report.terminal import layer_table, render, render_diagnosis, use_color
from gradientflow.trace import Trace
from tests.report.traces import diagnosis_for, vanishing

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NASTY = ["fc0", "x\x1b[2J\x07bell", "[red]x[/red]", "tab\there", "nl\nname", "rtl\u202eevil"]


def test_plain_diagnosis_has_verdict_findings_table_and_no_colour() -> None:
    t = vanishing()
    text = render_diagnosis(diagnosis_for(t), t, color=False, prescriptions=False)
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert lines[0] == (
        "Verdict: UNHEALTHY - gradients vanish toward the input (critical); "
        "saturated sigmoid/tanh units (warning)."
    )
    assert "CRITICAL vanishing  layers: fc0, fc1, fc2, fc3" in lines
    assert "  evidence: ratio=1.00e-05, gain=[0.1, 0.1]" in lines
    assert "  remedies to try: swap_activation:relu, batchnorm" in lines
    assert "WARNING  saturation  layers: fc1, fc2" in lines
    assert "Per layer (input to output, latest measured values):" in lines
    healthy = render(Diagnosis([], meta={"recorded_steps": 12}))
    assert healthy == "Verdict: healthy - no warning or critical finding in 12 recorded steps."


def test_long_messages_and_layer_lists_wrap_to_100_columns() -> None:
    f = Finding("vanishing", "critical", [f"layer{i}" for i in range(20)], {}, "word " * 60, [])
    text = render(Diagnosis([f]))
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "layer0, layer1, layer2, layer3, layer4 ... layer19 (20 layers)" in text


def test_prescriptions_under_findings_skip_what_does_not_apply() -> None:
    torch = pytest.importorskip("torch")
    f = Finding("vanishing", "critical", ["0"], {}, "m", ["add_batchnorm", "to_lstm"])
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid(), torch.nn.Linear(2, 1))
    unfiltered = render_diagnosis(Diagnosis([f]), color=False)
    filtered = render_diagnosis(Diagnosis([f]), color=False, model=mlp)
    assert "prescription: add_batchnorm" in unfiltered and "prescription: to_lstm" in unfiltered
    assert "prescription: add_batchnorm" in filtered and "prescription: to_lstm" not in filtered


@pytest.mark.parametrize("use_rich", [True, False])
def test_colour_styles_the_same_text_and_never_interprets_names(
    use_rich: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_rich:
        pytest.importorskip("rich")
    else:
        monkeypatch.setattr(terminal, "_rich_console", lambda: None)
    t = vanishing(NASTY)
    d = diagnosis_for(t)
    coloured = render_diagnosis(d, t, color=True, prescriptions=False)
    plain = render_diagnosis(d, t, color=False, prescriptions=False)
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured) == plain  # colour adds styles, never changes the text
    assert "[red]x[/red]" in plain  # rich markup in a name is shown, not interpreted


@pytest.mark.parametrize("color", [True, False])
def test_control_characters_in_names_are_shown_escaped(color: bool) -> None:
    t = vanishing(NASTY)
    d = diagnosis_for(t)
    d.findings[0].message += " \x1b]0;title\x07"
    text = ANSI.sub("", render_diagnosis(d, t, color=color, prescriptions=False))
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\u202e]", text)
    for escaped in (r"x\x1b[2J\x07bell", r"tab\x09here", r"nl\x0aname", r"rtl\u202eevil"):
        assert escaped in text
    assert r"\x1b]0;title\x07" in text
    table = layer_table(t, color=color)
    assert r"x\x1b[2J\x07bell" in ANSI.sub("", table)
    assert "\x07" not in table and "\n" + "name" not in table


def test_layer_table_columns_and_values() -> None:
    t = vanishing()
    lines = layer_table(t).splitlines()
    assert lines[0] == "depth  layer  kind    grad norm  rel update  dead  saturated"
    assert lines[1].split() == ["0", "fc0", "Linear", "2.10e-05", "1.80e-07", "-", "-"]
    assert lines[-1].split() == ["5", "fc5", "Linear", "2.10e+00", "1.80e-02", "5%", "10%"]
    frozen = Trace.build(["a", "b"], steps=[0], grad_norm=[[1.0, 2.0]])
    frozen.layers[0].trainable = False
    assert "a (frozen)" in layer_table(frozen)


def test_empty_traces_render() -> None:
    assert layer_table(Trace.build([], steps=[])).split() == [
        "depth",
        "layer",
        "kind",
        "grad",
        "norm",
        "rel",
        "update",
        "dead",
        "saturated",
    ]
    row = layer_table(Trace.build(["a"], steps=[])).splitlines()[1].split()
    assert row == ["0", "a", "Linear", "-", "-", "-", "-"]


def test_monitor_summary_is_the_layer_table_of_its_trace() -> None:
    import torch

    import gradientflow

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with gradientflow.watch(model) as mon:
        model(torch.ones(2, 3)).sum().backward()
        mon.step(loss=1.0)
    text = mon.summary()
    assert text == layer_table(mon.trace)
    assert [line.split()[1] for line in text.splitlines()[1:]] == ["0", "2"]


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


def test_show_escapes_names_with_and_without_no_color(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    names = ["fc0", "evil\x1b[2J\x07", "fc2", "fc3", "fc4", "fc5"]
    run_dir = vanishing(names).save(tmp_path / "run")
    for argv, colour in ((["--no-color"], False), ([], True)):
        # stdout is captured (not a TTY): make "a terminal" the answer when no flag says no
        monkeypatch.setattr(
            terminal, "use_color", lambda c=None, s=None, on=colour: on if c is None else c
        )
        assert main(["show", str(run_dir), *argv]) == 0
        out = capsys.readouterr().out
        assert bool(ANSI.search(out)) == colour
        assert r"evil\x1b[2J\x07" in out
        assert "\x07" not in out and "\x1b[2J" not in out


def test_report_command_writes_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = vanishing()
    run_dir = t.save(tmp_path / "run")
    argv = ["report", str(run_dir), "-o", str(tmp_path / "out.html")]
    assert main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'out.html'}" in out
    text = (tmp_path / "out.html").read_text()
    assert "gradientflow report: run" in text and "id='plot-profile'" in text
    assert any((tmp_path / "tb").iterdir())
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "holds no gradientflow trace" in capsys.readouterr().err


def test_an_unknown_verdict_says_why_everywhere() -> None:
    from gradientflow.diagnosis.findings import Diagnosis
    from gradientflow.report.html_findings import verdict_html
    from gradientflow.report.tensorboard import diagnosis_markdown
    from gradientflow.report.terminal import verdict

    d = Diagnosis([], reason="recording failed at step 3")
    assert d.verdict == "unknown" and not d.healthy
    assert verdict(d) == "Verdict: UNKNOWN - recording failed at step 3."
    assert "Unknown" in verdict_html(d) and "recording failed at step 3" in verdict_html(d)
    assert diagnosis_markdown(d).startswith("### Unknown: recording failed at step 3")


def test_a_finding_with_long_layer_names_stays_within_the_width() -> None:
    names = [f"model.encoder.layers.{i}.attention.output.dense" for i in range(5)]
    finding = Finding("vanishing", "critical", names, {}, "Gradients vanish.", [])
    for color in (False, True):
        text = terminal.render_finding(finding, color=color)
        plain_lines = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
        assert max(len(line) for line in plain_lines) <= 100, plain_lines
        assert plain_lines[0].startswith("CRITICAL vanishing  layers: model.encoder.layers.0.")
        assert all(n in " ".join(plain_lines) for n in names)  # every name, none cut
