"""``gradientflow report``: what it refuses to write over, and what it reads beside the trace."""

from __future__ import annotations

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
