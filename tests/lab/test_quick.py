"""``gradientflow lab --quick``: every experiment, two worker processes, every criterion met,
every negative control failing its criterion.

This is the lab's proof in CI (the quick lab takes about 110 s on two quiet cores since
trainability trains every cell at three learning rates; 69 s before). It also
checks that the committed results behind the docs (docs/lab-results/quick.json) were made by
this code: same setup, same criterion for every experiment. The full lab over three seeds does
not fit the suite's time budget; it runs only when ``GRADIENTFLOW_FULL_LAB=1`` is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradientflow.cli import main
from gradientflow.lab import docs, experiments


def _check_outputs(
    out: Path, quick: bool, seeds: int, may_miss: frozenset[str] = frozenset()
) -> list[dict]:  # type: ignore[type-arg]
    """Every experiment passes on every seed (except those in ``may_miss``, which the docs
    state), every negative control fails its criterion, and the outputs are complete."""
    data = json.loads((out / "results.json").read_text())
    runs = data["results"]
    assert list(dict.fromkeys(r["name"] for r in runs)) == experiments.names()
    assert len(runs) == seeds * len(experiments.names())
    failed = {
        (r["name"], r["seed"]): [c for c in r["checks"] if not c["passed"]] or r["error"]
        for r in runs
        if not r["passed"] and r["name"] not in may_miss
    }
    assert not failed, failed
    controls = {(r["name"], r["seed"]): r["negative_control"] for r in runs}
    assert all(c["fails"] for c in controls.values()), controls
    missed = {r["name"] for r in runs if not r["passed"]}
    assert data["meta"]["quick"] is quick and data["meta"]["passed"] is (not missed)
    assert all(r["quick"] is quick for r in runs)
    assert set(data["spread"]) == set(experiments.names())
    assert (out / "summary.md").read_text().count(f"pass ({seeds}/{seeds} seeds)") == len(
        experiments.names()
    ) - len(missed)
    html = (out / "report.html").read_text()
    assert html.count("<section id=") == len(experiments.names())
    assert html.count("data:image/png;base64,") >= len(experiments.names())
    return runs  # type: ignore[no-any-return]


#: setup entries that describe the machine (hardware's devices), not the experiment
_MACHINE = {"configurations", "what_it_checks_here", "torch_threads"}


def _portable(setup: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in setup.items() if k not in _MACHINE}


def _same_as_committed(runs: list[dict], mode: str) -> None:  # type: ignore[type-arg]
    committed = docs.load(mode)
    if committed is None:
        return
    ours = {r["name"]: r for r in runs if r["seed"] == 0}
    for r in committed["results"]:
        if r["seed"] == 0:
            mine = ours[r["name"]]
            assert _portable(r["setup"]) == _portable(mine["setup"]), f"{r['name']}: docs stale"
            assert r["criterion"] == mine["criterion"], f"{r['name']}: docs are stale"


@pytest.mark.slow
def test_quick_lab_passes_every_criterion(tmp_path: Path) -> None:
    code = main(["lab", "--quick", "--jobs", "2", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    _same_as_committed(_check_outputs(tmp_path, quick=True, seeds=1), "quick")


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GRADIENTFLOW_FULL_LAB") != "1",
    reason="full lab over 3 seeds (about an hour on 2 cores): set GRADIENTFLOW_FULL_LAB=1",
)
def test_full_lab_passes_every_criterion_on_three_seeds(tmp_path: Path) -> None:
    args = ["lab", "--seeds", "3", "--jobs", "2", "--out", str(tmp_path), "--no-progress"]
    code = main(args)
    runs = _check_outputs(
        tmp_path,
        quick=False,
        seeds=3,
        may_miss=frozenset(docs.FULL_MISSES) | frozenset(docs.STATED_SPREAD),
    )
    assert code == (1 if any(not r["passed"] for r in runs) else 0)
    _same_as_committed(runs, "full")
