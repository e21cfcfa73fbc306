"""The lab runner, its written outputs and the ``gradientflow lab`` command (fast parts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradientflow.cli import main
from gradientflow.errors import GradientFlowError
from gradientflow.lab import experiments, runner
from gradientflow.lab.record import ExperimentResult, control, jsonable, verdict
from gradientflow.lab.reporting import render_html, spread, summary_table


def _fake(passed: bool, out_dir: Path | None, seed: int = 0) -> ExperimentResult:
    import matplotlib

    matplotlib.use("Agg")
    from gradientflow.lab.figures import save_figure

    figures = save_figure(out_dir, "fake", lambda ax: ax.plot([0, 1], [1, 0]))
    checks = [{"check": "x < 1", "passed": passed}]
    negative = control("x = 2", [{"check": "x < 1", "passed": False}])
    return ExperimentResult(
        name="fake",
        claim="a <claim>",
        source="nowhere",
        setup={"n": 1},
        measured={"x": np.float64(0.5 + seed), "curve": np.arange(3)},
        criterion="x < 1",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        figures=figures,
        seed=seed,
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
        "b": "inf",
        "c": [3],
    }


def test_outputs_written_and_failure_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = {"mean-field": True, "hardware": False}

    def fake_load(name: str):  # type: ignore[no-untyped-def]
        def run(
            quick: bool = False, out_dir: Path | None = None, seed: int = 0
        ) -> ExperimentResult:
            result = _fake(outcomes[name], out_dir, seed)
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
    assert "| hardware | FAIL (0/1 seeds) |" in summary and "failed check: x < 1" in summary
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "a &lt;claim&gt;" in html
    code = main(
        ["lab", "mean-field", "hardware", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]
    )
    assert code == 1


def test_crashing_experiment_becomes_a_failed_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(name: str):  # type: ignore[no-untyped-def]
        def run(
            quick: bool = False, out_dir: Path | None = None, seed: int = 0
        ) -> ExperimentResult:
            raise RuntimeError("exploded at step 3")

        return run

    monkeypatch.setattr(experiments, "load", boom)
    record = runner.run_one("mean-field", True, None)
    assert record["passed"] is False
    assert "RuntimeError: exploded at step 3" in str(record["error"])


def test_reporting_renders_without_figures() -> None:
    r = _fake(True, None)
    assert "| fake | pass (1/1 seeds) | x < 1 | fails (1/1) |" in summary_table([r])
    assert "<!DOCTYPE html>" in render_html([r], {"quick": True})


def test_cli_list_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--list"]) == 0
    assert "mean-field" in capsys.readouterr().out
    assert main(["lab", "no-such-experiment", "--no-progress"]) == 2
    assert main(["lab", "mean-field", "--jobs", "0", "--no-progress"]) == 2
    assert main(["lab", "mean-field", "--seeds", "0", "--no-progress"]) == 2


def test_a_criterion_its_negative_control_passes_fails_the_experiment() -> None:
    ok = [{"check": "x < 1", "passed": True}]
    assert verdict(ok, control("x = 2", [{"check": "x < 1", "passed": False}])) is True
    assert verdict(ok, control("x = 0.5", ok)) is False  # the criterion cannot tell them apart
    assert verdict([{"check": "x < 1", "passed": False}], control("c", [])) is False


def test_seeds_run_each_experiment_and_record_the_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_load(name: str):  # type: ignore[no-untyped-def]
        def run(
            quick: bool = False, out_dir: Path | None = None, seed: int = 0
        ) -> ExperimentResult:
            result = _fake(seed != 1, out_dir, seed)
            result.name = name
            return result

        return run

    monkeypatch.setattr(experiments, "load", fake_load)
    results = runner.run_lab(["mean-field"], out_dir=tmp_path, jobs=1, progress=False, seeds=3)
    assert [(r.seed, r.passed) for r in results] == [(0, True), (1, False), (2, True)]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["seeds"] == [0, 1, 2] and data["meta"]["passed"] is False
    x = data["spread"]["mean-field"]["x"]  # 0.5, 1.5, 2.5
    assert (x["mean"], x["sd"], x["min"], x["max"], x["n"]) == (1.5, 1.0, 0.5, 2.5, 3)
    assert "| mean-field | FAIL (2/3 seeds) |" in (tmp_path / "summary.md").read_text()
    assert "curve" not in spread(results)["mean-field"]  # lists are not averaged
