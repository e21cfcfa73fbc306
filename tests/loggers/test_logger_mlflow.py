"""watch(..., mlflow=...): runs in a local MLflow store, read back with ``MlflowClient``.

MLflow's import and its store's first creation take seconds: one store for the module."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from logged_runs import expected_series, vanishing_run

from gradientflow.errors import GradientFlowError
from gradientflow.loggers._common import findings_table
from gradientflow.report.tensorboard import diagnosis_markdown

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Any]]:
    """A working folder holding MLflow's default store (``./mlflow.db``, artifacts in
    ``./mlruns``), with no tracking URI set, as for a user who set nothing."""
    root = tmp_path_factory.mktemp("mlflow")
    before, env = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    mlflow.set_tracking_uri(None)
    os.chdir(root)
    try:
        uri = f"sqlite:///{root}/mlflow.db"
        yield root, uri, MlflowClient(uri)
    finally:
        os.chdir(before)
        mlflow.set_tracking_uri(None)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def latest_run(client: Any, experiment: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])[:1]
    return run


def test_metrics_tags_and_findings_read_back(store: tuple[Path, str, Any]) -> None:
    root, uri, client = store
    mon = vanishing_run(mlflow=uri)
    run = latest_run(client, "gradientflow")
    assert run.info.status == "FINISHED"  # a run gradientflow made is ended at close
    run_id = run.info.run_id
    for key, series in expected_series(mon).items():
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == list(series), key
        np.testing.assert_allclose([m.value for m in history], list(series.values()), rtol=1e-12)

    diagnosis = mon.diagnose()
    assert "vanishing" in [f.kind for f in diagnosis.findings]  # 12 sigmoid layers
    tags = run.data.tags
    assert tags["gradientflow.verdict"] == "unhealthy"
    assert tags["gradientflow.findings"] == str(len(diagnosis.findings))
    md = Path(client.download_artifacts(run_id, "gradientflow/findings.md", str(root)))
    assert md.read_text() == diagnosis_markdown(diagnosis)
    table = json.loads(
        Path(client.download_artifacts(run_id, "gradientflow/findings.json")).read_text()
    )
    columns, rows = findings_table(diagnosis)
    assert table["columns"] == columns and table["rows"] == rows
    assert table["diagnosis"]["verdict"] == "unhealthy"


def test_default_store_and_experiment_name(store: tuple[Path, str, Any]) -> None:
    _, _, client = store
    mon = vanishing_run(steps=4, mlflow="my-experiment")  # nothing set: MLflow's local default
    run = latest_run(client, "my-experiment")  # ... which is ./mlflow.db in this folder
    grad = client.get_metric_history(run.info.run_id, "grad_norm/22")
    assert [m.value for m in grad] == pytest.approx(mon.trace.metrics["grad_norm"][:, -1].tolist())


def test_the_active_run_is_used_and_left_open(store: tuple[Path, str, Any]) -> None:
    _, uri, client = store
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as active:
            mon = vanishing_run(steps=3, mlflow=True)
            run = client.get_run(active.info.run_id)
            assert run.info.status == "RUNNING"  # the user's run: not ended by gradientflow
            loss = client.get_metric_history(active.info.run_id, "loss")
            assert [m.step for m in loss] == [0, 1, 2]
            assert [m.value for m in loss] == pytest.approx(mon.trace.loss.tolist())
            assert run.data.tags["gradientflow.verdict"] == mon.diagnose().verdict
    finally:
        mlflow.set_tracking_uri(None)


def test_a_wrong_mlflow_argument_is_named() -> None:
    import torch

    import gradientflow

    with pytest.raises(GradientFlowError, match="`mlflow` must be True, an experiment name"):
        gradientflow.watch(torch.nn.Linear(2, 1), mlflow=3)  # type: ignore[typeddict-item]
