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
    # a damaged trial.json is left out with a note, the report still written
    (saved_run / "trial.json").write_text("{not json")
    assert main(["report", str(saved_run)]) == 0
    assert "id='trial'" not in (saved_run / "report.html").read_text()
    assert "trial.json left out" in capsys.readouterr().err
