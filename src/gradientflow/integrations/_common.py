"""What the framework callbacks share: per-layer scalars for a logger, and the end of a run.

Both callbacks (:mod:`~gradientflow.integrations.lightning`,
:mod:`~gradientflow.integrations.transformers`) are thin: they call :func:`gradientflow.watch`
on the framework's model and (unwrapped) optimizer, hand each flushed chunk's per-layer values
to the framework's logger through :class:`LoggerStream`, and at the end of training
:func:`finish` prints the diagnosis and saves it, with the HTML report, beside the trace.

>>> import numpy as np
>>> from gradientflow.trace import LayerInfo
>>> chunk = {"steps": np.array([0, 1]), "m.grad_norm": np.array([[1.0, np.nan], [2.0, 3.0]]),
...          "s.global_grad_norm": np.array([1.0, 3.6])}
>>> layers = [LayerInfo("fc1", "Linear", 4), LayerInfo("fc2", "Linear", 4)]
>>> for step, values in scalar_rows(chunk, layers, ("grad_norm",), prefix="gf"):
...     print(step, values)
0 {'gf/grad_norm/fc1': 1.0, 'gf/global_grad_norm': 1.0}
1 {'gf/grad_norm/fc1': 2.0, 'gf/grad_norm/fc2': 3.0, 'gf/global_grad_norm': 3.6}
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.jsonsafe import json_safe
from gradientflow.loggers._common import scalar_rows as rows_of
from gradientflow.schema import LAYER_METRICS
from gradientflow.trace import LayerInfo, Trace

#: Per-layer columns sent to the framework's logger by default (a few, not 200 curves).
DEFAULT_METRICS = ("grad_norm", "rel_update")
#: Per-step columns sent with them.
STEP_METRICS = ("global_grad_norm",)

LogFn = Callable[[dict[str, float], int], None]


def checked_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """The per-layer columns to send to the loggers, each one the trace has.

    >>> checked_metrics(["grad_nrom"])
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: metrics: unknown per-layer column 'grad_nrom'; \
known: ...
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in LAYER_METRICS]
    if unknown:
        raise GradientFlowError(
            f"metrics: unknown per-layer column {unknown[0]!r}; known: {', '.join(LAYER_METRICS)}"
        )
    return tuple(metrics)


def scalar_rows(
    chunk: Mapping[str, np.ndarray],
    layers: Sequence[LayerInfo],
    metrics: Sequence[str],
    prefix: str = "gradientflow",
    step_offset: int = 0,
) -> Iterator[tuple[int, dict[str, float]]]:
    """For each row of a flushed chunk: its step and ``{"prefix/metric/layer": value}``.

    Values not measured at a step (NaN) are left out, as are columns the chunk lacks (the rows
    come from :func:`gradientflow.loggers._common.scalar_rows`, which the trackers use too).
    """
    if "steps" not in chunk:
        return
    trace = Trace.concat(list(layers), [dict(chunk)])
    yield from rows_of(
        trace, metrics, STEP_METRICS, prefix=f"{prefix}/", keep_nonfinite=False,
        step_offset=step_offset,
    )  # fmt: skip


class LoggerStream:
    """A monitor listener: each flushed chunk's per-layer values, step by step, to ``log``.

    A failing logger is reported once (a :class:`GradientFlowWarning`) and then left alone:
    it never stops the training nor the recording.
    """

    def __init__(
        self, log: LogFn, metrics: Sequence[str] = DEFAULT_METRICS, step_offset: int = 0
    ) -> None:
        self.log = log
        self.metrics = checked_metrics(metrics)
        self.step_offset = step_offset
        self.failed: str | None = None

    def on_flush(self, event: Any) -> None:
        if self.failed is not None or not event.layers:
            return
        rows = scalar_rows(event.chunk, event.layers, self.metrics, step_offset=self.step_offset)
        try:
            for step, values in rows:
                if values:
                    self.log(values, step)
        except Exception as exc:  # the user's logger must not stop the training
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"gradientflow: the logger failed ({self.failed}); per-layer scalars are no "
                "longer sent to it (the trace is still recorded)",
                GradientFlowWarning,
                stacklevel=2,
            )

    def close(self, event: Any) -> None:
        pass


def finish(
    monitor: Any,
    run_dir: Path | None,
    *,
    show: bool = True,
    report: bool = True,
    model: Any = None,
) -> Any:
    """Detach ``monitor``; print the diagnosis; save ``diagnosis.json`` (and ``report.html``).

    Returns the :class:`~gradientflow.Diagnosis`, or None if nothing was recorded. A failure
    here is a warning: the end of a training run is never turned into a crash.
    """
    try:
        trace = monitor.detach()
    except Exception as exc:
        _warn(f"no trace to diagnose ({exc})")
        return None
    try:
        from gradientflow.diagnosis import diagnose
        from gradientflow.report.terminal import render_diagnosis

        diagnosis = diagnose(trace)
        if show:
            print(render_diagnosis(diagnosis, trace, model=model), file=sys.stderr)
        if run_dir is not None:
            save(trace, diagnosis, run_dir, report=report)
        return diagnosis
    except Exception as exc:
        _warn(f"the diagnosis or report failed ({type(exc).__name__}: {exc})")
        return None


def save(trace: Any, diagnosis: Any, run_dir: Path, *, report: bool = True) -> None:
    """``diagnosis.json`` and ``report.html`` beside the trace (``gradientflow show DIR``)."""
    from gradientflow.report.html import write_html
    from gradientflow.store import write_file

    # the CLI's diagnosis.json (diagnose --out): the diagnosis and the per-layer summary; its
    # meta is the trace's with the diagnosis' own entries (not_judged ...) on top
    document = diagnosis.to_dict()
    document["meta"] = {**json_safe(trace.meta), **document["meta"]}
    document["layers"] = json_safe(trace.summary_rows())
    write_file(run_dir, "diagnosis.json", json.dumps(json_safe(document), indent=2))
    if report:
        write_html(trace, run_dir / "report.html", diagnosis)


def run_dir_for(explicit: str | os.PathLike[str] | None, framework_dir: str | None) -> Path:
    """``explicit`` if given, else the first of ``<framework_dir>/gradientflow``,
    ``gradientflow-1``, ... that is free (``framework_dir`` None: the current folder)."""
    if explicit is not None:
        return Path(explicit)
    base = Path(framework_dir or ".")
    for i in range(10_000):
        path = base / ("gradientflow" if i == 0 else f"gradientflow-{i}")
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return path  # a new folder: an earlier run in the same place is kept
    return base / "gradientflow"


def _warn(message: str) -> None:
    warnings.warn(f"gradientflow: {message}", GradientFlowWarning, stacklevel=3)
