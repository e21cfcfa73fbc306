"""Experiment trackers fed by the monitor's flushes: Weights & Biases and MLflow.

``watch(model, opt, wandb=run)`` logs to a W&B run (``wandb.init(...)``, offline mode included);
``watch(model, opt, mlflow=True)`` logs to MLflow (the active run, else a new run in a local
``mlruns/`` store; a string names the experiment or, with ``://``/``file:``, the tracking URI).
Each is a :class:`~gradientflow.recorder.Listener`. Per recorded optimizer step they log:

- ``grad_norm/<layer>``, ``rel_update/<layer>`` where measured (a gradient norm whose gradient
  held NaN/Inf is logged as measured);
- ``loss``, ``global_grad_norm`` where logged;

and at ``close()`` the verdict and the findings (W&B: summary keys and a table; MLflow: tags and
``gradientflow/findings.md``/``.json`` artifacts).

>>> loggers_for(None, None)
[]
"""

from __future__ import annotations

from typing import Any

from gradientflow.recorder import Listener


def loggers_for(wandb: Any, mlflow: bool | str | None) -> list[tuple[Listener, tuple[int, ...]]]:
    """The logger listeners ``watch(..., wandb=, mlflow=)`` asks for."""
    out: list[tuple[Listener, tuple[int, ...]]] = []
    if wandb is not None:
        from gradientflow.loggers.wandb import WandbStream

        out.append((WandbStream(wandb), ()))
    if mlflow is not None and mlflow is not False:
        from gradientflow.loggers.mlflow import MlflowStream

        out.append((MlflowStream(mlflow), ()))
    return out
