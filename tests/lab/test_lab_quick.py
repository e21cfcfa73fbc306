"""``gradientflow lab --quick``: every experiment, two worker processes, every criterion met.

This is the lab's proof in CI (about 25–30 s wall on two idle cores, ~45 s of CPU).
The full lab (``gradientflow lab``, about 3 minutes on 2 cores) runs only when
``GRADIENTFLOW_FULL_LAB=1`` is set: it does not fit the suite's time budget.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradientflow.cli import main
from gradientflow.lab import experiments


def _check_outputs(out: Path, quick: bool) -> None:
    data = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in data["results"]]
    assert names == experiments.names()
    failed = {
        r["name"]: [c for c in r["checks"] if not c["passed"]] or r["error"]
        for r in data["results"]
        if not r["passed"]
    }
    assert not failed, failed
    assert data["meta"]["quick"] is quick and data["meta"]["passed"] is True
    assert all(r["quick"] is quick for r in data["results"])
    assert (out / "summary.md").read_text().count("| pass |") == len(names)
    html = (out / "report.html").read_text()
    assert html.count("<section id=") == len(names)
    assert html.count("data:image/png;base64,") >= len(names)


@pytest.mark.slow
def test_quick_lab_passes_every_criterion(tmp_path: Path) -> None:
    code = main(["lab", "--quick", "--jobs", "2", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    _check_outputs(tmp_path, quick=True)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GRADIENTFLOW_FULL_LAB") != "1",
    reason="full lab (~3 min, ~150 s CPU): set GRADIENTFLOW_FULL_LAB=1",
)
def test_full_lab_passes_every_criterion(tmp_path: Path) -> None:
    code = main(["lab", "--jobs", "2", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    _check_outputs(tmp_path, quick=False)
