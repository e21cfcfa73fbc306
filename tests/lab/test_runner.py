"""The lab runner, its written outputs and the ``gradientflow lab`` command (fast parts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradientflow.cli import main
from gradientflow.errors import GradientFlowError
from gradientflow.lab import experiments, runner
from gradientflow.lab.record import ExperimentResult, jsonable
from gradientflow.lab.reporting import render_html, summary_table


def _fake(passed: bool, out_dir: Path | None) -> ExperimentResult:
    import matplotlib

    matplotlib.use("Agg")
    from gradientflow.lab.figures import save_figure

    figures = save_figure(out_dir, "fake", lambda ax: ax.plot([0, 1], [1, 0]))
    return ExperimentResult(
        name="fake",
        claim="a <claim>",
        source="nowhere",
        setup={"n": 1},
        measured={"x": np.float64(0.5), "curve": np.arange(3)},
        criterion="x < 1",
        passed=passed,
        checks=[{"check": "x < 1", "passed": passed}],
        figures=figures,
    )


def test_registry_lists_every_experiment() -> None:
    names = experiments.names()
    assert len(names) == len(set(names)) >= 10
    for name in names:
        assert callable(experiments.load(name))
        assert experiments.describe(name)
    with pytest.raises(GradientFlowError, match="unknown experiment 'nope'"):
        experiments.load("nope")


def test_jsonable_handles_numpy_and_nan() -> None:
    assert jsonable({"a": np.arange(2), "b": float("inf"), "c": (np.int64(3),)}) == {
        "a": [0, 1],
        "b": None,
        "c": [3],
    }


def test_outputs_written_and_failure_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = {"mean-field": True, "hardware": False}

    def fake_load(name: str):  # type: ignore[no-untyped-def]
        def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
            result = _fake(outcomes[name], out_dir)
            result.name = name
            return result

        return run

    monkeypatch.setattr(experiments, "load", fake_load)
    results = runner.run_lab(
        ["mean-field", "hardware"], quick=True, out_dir=tmp_path, jobs=1, progress=False
    )
    assert [r.passed for r in results] == [True, False]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["passed"] is False and data["results"][0]["measured"]["x"] == 0.5
    summary = (tmp_path / "summary.md").read_text()
    assert "| hardware | FAIL |" in summary and "failed check: x < 1" in summary
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "a &lt;claim&gt;" in html
    code = main(
        ["lab", "mean-field", "hardware", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]
    )
    assert code == 1


def test_crashing_experiment_becomes_a_failed_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(name: str):  # type: ignore[no-untyped-def]
        def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
            raise RuntimeError("exploded at step 3")

        return run

    monkeypatch.setattr(experiments, "load", boom)
    record = runner.run_one("mean-field", True, None)
    assert record["passed"] is False
    assert "RuntimeError: exploded at step 3" in str(record["error"])


def test_reporting_renders_without_figures() -> None:
    r = _fake(True, None)
    assert "| fake | pass | x < 1 |" in summary_table([r])
    assert "<!DOCTYPE html>" in render_html([r], {"quick": True})


def test_cli_list_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--list"]) == 0
    assert "mean-field" in capsys.readouterr().out
    assert main(["lab", "no-such-experiment", "--no-progress"]) == 2
    assert main(["lab", "mean-field", "--jobs", "0", "--no-progress"]) == 2
