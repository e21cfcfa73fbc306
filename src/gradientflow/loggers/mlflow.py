"""``watch(model, opt, mlflow=True)``: the per-layer scalars and the findings in an MLflow run.

``mlflow=True`` logs into the active run (``mlflow.start_run()``) if there is one, else into a
new run of the experiment ``gradientflow`` at MLflow's tracking URI: the one set
(``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``), else MLflow's local default (MLflow 3:
``sqlite:///mlflow.db`` in the working folder, or ``./mlruns`` if that holds runs; ``mlflow ui``
reads either; no server needed). ``mlflow="name"`` names the experiment;
``mlflow="sqlite:///path.db"`` (any ``scheme:`` URI) names the tracking URI. A run
gradientflow created is ended at ``close()``; the user's own run is left open. At ``close()``
the run gets the tags ``gradientflow.verdict`` and ``gradientflow.findings`` (how many) and
the artifacts ``gradientflow/findings.md`` and ``gradientflow/findings.json``.

``pip install 'gradientflow[mlflow]'``. Metric keys keep MLflow's characters (letters, digits,
``_ - . / `` and space); any other character of a layer name becomes ``_``.

>>> metric_key("grad_norm/blocks[0].fc")
'grad_norm/blocks_0_.fc'
>>> target_of("runs-exp"), target_of("sqlite:///runs.db")
((None, 'runs-exp'), ('sqlite:///runs.db', 'gradientflow'))
"""

from __future__ import annotations

import re
import time
from typing import Any

from gradientflow.errors import GradientFlowError
from gradientflow.loggers._common import chunk_rows, final_diagnosis, findings_table
from gradientflow.recorder import Flush

EXPERIMENT = "gradientflow"
BATCH = 1000  # MLflow's limit of metrics per log_batch call
_BAD = re.compile(r"[^\w\-. /]")


def metric_key(key: str) -> str:
    return _BAD.sub("_", key)


def target_of(option: bool | str) -> tuple[str | None, str]:
    """``(tracking URI or None for the default, experiment name)`` from ``mlflow=``."""
    if option is True:
        return None, EXPERIMENT
    if isinstance(option, str) and option:
        if re.match(r"[a-z][a-z0-9+.-]*:", option) and not re.match(r"[A-Za-z]:\\", option):
            return option, EXPERIMENT
        return None, option
    raise GradientFlowError(
        f"watch(): `mlflow` must be True, an experiment name or a tracking URI, got {option!r:.60}"
    )


class MlflowStream:
    """Logs each flushed chunk's scalars to an MLflow run; the findings at close."""

    def __init__(self, option: bool | str) -> None:
        uri, experiment = target_of(option)
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise GradientFlowError(
                "watch(mlflow=...) needs the mlflow package: pip install 'gradientflow[mlflow]'"
            ) from exc
        active = mlflow.active_run() if option is True else None
        if active is not None:
            self.client = MlflowClient(mlflow.get_tracking_uri())
            self.run_id, self.owned = active.info.run_id, False
        else:
            self.client = MlflowClient(uri)  # None: MLflow's own default
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run = self.client.create_run(exp_id, tags={"gradientflow": "watch"})
            self.run_id, self.owned = run.info.run_id, True

    def on_flush(self, event: Flush) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(key), value, now, step)
            for step, row in chunk_rows(event)
            for key, value in row.items()
        ]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH])

    def close(self, event: Flush) -> None:
        try:
            diagnosis = final_diagnosis(event)
            if diagnosis is not None:
                self._log_findings(diagnosis)
        finally:
            if self.owned:
                self.client.set_terminated(self.run_id)

    def _log_findings(self, diagnosis: Any) -> None:
        from gradientflow.report.tensorboard import diagnosis_markdown

        self.client.set_tag(self.run_id, "gradientflow.verdict", diagnosis.verdict)
        self.client.set_tag(self.run_id, "gradientflow.findings", str(len(diagnosis.findings)))
        self.client.log_text(self.run_id, diagnosis_markdown(diagnosis), "gradientflow/findings.md")
        columns, rows = findings_table(diagnosis)
        table = {"columns": columns, "rows": rows, "diagnosis": diagnosis.to_dict()}
        self.client.log_dict(self.run_id, table, "gradientflow/findings.json")
