"""``gradientflow report``: what it refuses to write over, and what it reads beside the trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradientflow.cli import main
from gradientflow.trace import Trace


@pytest.fixture
def saved_run(tmp_path: Path) -> Path:
    trace = Trace.build(["fc0", "fc1"], steps=[0, 1], grad_norm=[[1e-3, 1.0], [1e-3, 1.0]])
    return trace.save(tmp_path / "run")


@pytest.mark.parametrize(
    "name", ["meta.json", "manifest.json", "chunks/00000000.npz", "chunks/new.html", "extras/x"]
)
def test_report_refuses_to_write_over_the_runs_own_files(
    saved_run: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in saved_run.rglob("*") if p.is_file()}
    assert main(["report", str(saved_run), "-o", str(saved_run / name)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "belongs to the run" in err
    assert {p: p.read_bytes() for p in saved_run.rglob("*") if p.is_file()} == before
    assert len(Trace.load(saved_run).steps) == 2
    # beside the run, or in another folder, a report is written as before
    assert main(["report", str(saved_run), "-o", str(saved_run / "other.html")]) == 0
    assert main(["report", str(saved_run), "-o", str(saved_run.parent / "meta.json")]) == 0


def _save_trial(run_dir: Path, *, prescribed: bool) -> None:
    """A ``trial.json`` as ``diagnose --out DIR --trial`` writes it beside the trace."""
    from gradientflow.remedies.registry import REGISTRY
    from gradientflow.trial.table import TrialRow, TrialTable

    remedy = REGISTRY["add_batchnorm"].with_evidence("vanishing (critical): fc0", ["vanishing"], 3)
    rows = [TrialRow("baseline", final_loss=2.3), TrialRow("add_batchnorm", final_loss=0.2)]
    table = TrialTable(rows, meta={"prescribed": prescribed, "remedies": {remedy.name: remedy}})
    doc = table.to_dict()
    doc["meta"]["remedies"] = {remedy.name: remedy.to_dict()}
    (run_dir / "trial.json").write_text(json.dumps(doc))


def test_report_keeps_the_trial_and_prescriptions_saved_beside_the_run(
    saved_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _save_trial(saved_run, prescribed=True)
    assert main(["report", str(saved_run)]) == 0
    text = (saved_run / "report.html").read_text()
    assert "id='trial'" in text and "id='trial-table'" in text
    assert "id='prescriptions'" in text and "vanishing (critical): fc0" in text
    capsys.readouterr()
    # remedies named by --trial-remedies: the trial is kept, the missing prescriptions said
    _save_trial(saved_run, prescribed=False)
    assert main(["report", str(saved_run)]) == 0
    text = (saved_run / "report.html").read_text()
    assert "id='trial'" in text and "id='prescriptions'" not in text
    assert "no prescriptions" in capsys.readouterr().err
    # prescriptions.json (diagnose --out writes it) gives them back after --trial-remedies too
    remedy = {"name": "swap_activation:relu", "why": "saved beside the run"}
    (saved_run / "prescriptions.json").write_text(json.dumps([remedy]))
    assert main(["report", str(saved_run)]) == 0
    text = (saved_run / "report.html").read_text()
    assert "id='trial'" in text and "saved beside the run" in text
    assert "no prescriptions" not in capsys.readouterr().err
    (saved_run / "prescriptions.json").unlink()
    # a damaged trial.json is left out with a note, the report still written
    (saved_run / "trial.json").write_text("{not json")
    assert main(["report", str(saved_run)]) == 0
    assert "id='trial'" not in (saved_run / "report.html").read_text()
    assert "trial.json left out" in capsys.readouterr().err


def test_report_counts_an_infinite_nonfinite_count_without_crashing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for counts, shown in (([[float("inf"), 0.0]], "inf"), ([[1e308, 1e308]], "inf")):
        trace = Trace.build(["a", "b"], steps=[0], grad_norm=[[1.0, 1.0]], nonfinite=counts)
        run_dir = trace.save(tmp_path / f"run{len(list(tmp_path.iterdir()))}")
        assert main(["report", str(run_dir)]) == 0
        assert "Traceback" not in capsys.readouterr().err
        text = (run_dir / "report.html").read_text()
        assert f"{shown} non-finite gradient entries" in text


def test_report_of_a_damaged_run_says_how_many_records_were_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from torch import nn

    import gradientflow

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run_dir = tmp_path / "run"
    with gradientflow.watch(model, opt, log_dir=run_dir, flush_every=10) as mon:
        for _ in range(30):
            opt.zero_grad()
            loss = model(torch.randn(16, 4)).pow(2).mean()
            loss.backward()
            mon.log(loss=loss)
            opt.step()
    chunk = sorted((run_dir / "chunks").iterdir())[1]
    chunk.write_bytes(chunk.read_bytes()[:100])
    assert main(["report", str(run_dir), "--skip-damaged"]) == 0
    capsys.readouterr()
    text = (run_dir / "report.html").read_text()
    assert "20 recorded steps" in text and "10 records lost on load" in text
    assert "00000001.npz" in text  # which file, in the run details


def test_report_grammar_quoted_tensorboard_command_and_no_none_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One layer and one step are singular; the TensorBoard command printed can be pasted
    into a shell; evidence never measured (None) is left out, as in the terminal."""
    from gradientflow.diagnosis.findings import Finding
    from gradientflow.report.html_findings import finding_block

    trace = Trace.build(["fc"], steps=[0], grad_norm=[[1.0]])
    run_dir = trace.save(tmp_path / "run")
    tb = tmp_path / "tb dir; x"
    assert main(["report", str(run_dir), "--tensorboard", str(tb)]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir '{tb}'" in out
    text = (run_dir / "report.html").read_text()
    assert "1 layer ·" in text and "1 recorded step (" in text
    block = finding_block(Finding("stagnation", "warning", ["fc"], {"a": None, "b": 1.5}, "m"))
    assert "None" not in block and "b = 1.5" in block and "a =" not in block
