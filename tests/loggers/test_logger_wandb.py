"""watch(..., wandb=run): an offline W&B run, read back from its own ``.wandb`` file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from logged_runs import STEPS, expected_series, vanishing_run
from wandb_file import read_run

from gradientflow.errors import GradientFlowError
from gradientflow.loggers._common import findings_table
from gradientflow.report.tensorboard import diagnosis_markdown

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, no account
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def test_offline_run_holds_every_scalar_and_the_findings(offline: Path) -> None:
    run = wandb.init(project="gradientflow-test", dir=offline, mode="offline")
    mon = vanishing_run(wandb=run)
    run.finish()
    run_dir = Path(run.dir).parent  # .../wandb/offline-run-*
    got = read_run(run_dir)
    assert got["exited"]  # the whole run was written
    history, summary = got["history"], got["summary"]

    expected = expected_series(mon)
    assert len(expected["rel_update/0"]) == STEPS // 3  # measured on full steps only
    for key, series in expected.items():
        logged = {s: row[key] for s, row in history.items() if key in row}
        assert sorted(logged) == sorted(series), key  # the same steps, none more
        np.testing.assert_allclose([logged[s] for s in series], list(series.values()), rtol=1e-12)

    diagnosis = mon.diagnose()
    assert "vanishing" in [f.kind for f in diagnosis.findings]  # 12 sigmoid layers
    assert summary["gradientflow/verdict"] == "unhealthy"
    assert summary["gradientflow/findings"] == diagnosis_markdown(diagnosis)
    table_path = run_dir / "files" / summary["gradientflow/findings/path"]
    table = json.loads(table_path.read_text())
    columns, rows = findings_table(diagnosis)
    assert table["columns"] == columns and table["data"] == rows


def test_a_wrong_wandb_argument_is_named() -> None:
    import torch

    import gradientflow

    with pytest.raises(GradientFlowError, match="`wandb` must be a wandb Run"):
        gradientflow.watch(torch.nn.Linear(2, 1), wandb="my-project")
