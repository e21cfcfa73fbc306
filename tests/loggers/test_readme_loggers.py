"""The README's Loggers example runs as written (in a temporary folder, W&B offline, MLflow's
local default store), and both trackers hold its 100 steps.

Slow: MLflow creates its SQLite store (about 10 s) and W&B starts its service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wandb_file import read_run

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet(heading: str) -> str:
    section = README.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"README section {heading!r} should hold one python example"
    return blocks[0]


@pytest.mark.slow
def test_readme_loggers_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(_snippet("Loggers"), "README:loggers", "exec"), namespace)
    trace = namespace["mon"].trace  # type: ignore[attr-defined]
    assert trace.n_records == 100

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # MLflow's default, found there
    exp = client.get_experiment_by_name("gradientflow")
    (run,) = client.search_runs([exp.experiment_id])
    history = client.get_metric_history(run.info.run_id, "grad_norm/0")
    assert [m.step for m in history] == list(range(100))
    assert [m.value for m in history] == pytest.approx(trace.metrics["grad_norm"][:, 0].tolist())

    run_dir = Path(namespace["run"].dir).parent  # type: ignore[attr-defined]  # offline-run-*
    got = read_run(run_dir)
    logged = [got["history"][s]["grad_norm/0"] for s in range(100)]
    assert logged == pytest.approx(trace.metrics["grad_norm"][:, 0].tolist())
    assert got["summary"]["gradientflow/verdict"] == namespace["mon"].diagnose().verdict  # type: ignore[attr-defined]
