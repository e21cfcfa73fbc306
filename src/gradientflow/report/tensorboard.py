"""TensorBoard output: per-layer scalars and the findings as text, from any Trace.

Tags written (``<layer>`` is the layer's name in the trace):

- ``grad_norm/<layer>``, ``rel_update/<layer>``: one point per recorded step where measured
  (a non-finite gradient norm is written as measured, Inf or NaN);
- ``loss``, ``global_grad_norm``: per step, where logged;
- ``grad_ratio/first_over_last``: gradient norm of the first trainable layer over the last one's;
- ``diagnosis`` (text, Markdown): the verdict with each finding, its evidence and remedies.

TensorBoard is an optional extra (``pip install gradientflow[tensorboard]``); the writer is
PyTorch's ``torch.utils.tensorboard.SummaryWriter``, imported when first used.

>>> import tempfile
>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0, 1], grad_norm=[[1e-3, 1.0], [2e-3, 1.0]])
>>> path = write_tensorboard(t, tempfile.mkdtemp())
>>> path.is_dir()
True
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow._format import printable, sig3
from gradientflow.diagnosis.depth import grad_ratio
from gradientflow.errors import GradientFlowError
from gradientflow.trace import LAYER_METRICS, Trace

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis

DEFAULT_METRICS: tuple[str, ...] = ("grad_norm", "rel_update")
STEP_TAGS: tuple[str, ...] = ("loss", "global_grad_norm")


def write_tensorboard(
    trace: Trace,
    log_dir: str | os.PathLike[str],
    diagnosis: Diagnosis | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Path:
    """Write ``trace`` (and ``diagnosis``, if given) as TensorBoard events in ``log_dir``.

    View with ``tensorboard --logdir DIR``. Returns the folder.

    >>> import tempfile
    >>> from gradientflow.diagnosis.findings import Diagnosis
    >>> t = Trace.build(["fc"], steps=[0], grad_norm=[[0.5]], loss=[2.3])
    >>> write_tensorboard(t, tempfile.mkdtemp(), Diagnosis([])).is_dir()
    True
    """
    with TensorBoardWriter(log_dir, metrics=metrics) as writer:
        writer.write(trace)
        if diagnosis is not None:
            writer.write_diagnosis(diagnosis, step=int(trace.steps[-1]) if trace.n_records else 0)
    return Path(log_dir)


class TensorBoardWriter:
    """Streams a growing Trace to TensorBoard: each call to :meth:`write` adds the rows recorded
    since the previous call (rows are matched by optimizer step), so a monitor can call it at
    every flush.

    >>> import tempfile
    >>> t = Trace.build(["fc"], steps=[0, 1], grad_norm=[[0.5], [0.4]])
    >>> with TensorBoardWriter(tempfile.mkdtemp()) as w:
    ...     w.write(t.head(1)), w.write(t), w.write(t)
    (1, 1, 0)
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        metrics: Sequence[str] = DEFAULT_METRICS,
        flush_secs: int = 30,
    ) -> None:
        unknown = [m for m in metrics if m not in LAYER_METRICS]
        if unknown:
            raise GradientFlowError(
                f"TensorBoardWriter: unknown metrics {unknown}; known: {list(LAYER_METRICS)}"
            )
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise GradientFlowError(
                "TensorBoard output needs the tensorboard package: "
                "pip install 'gradientflow[tensorboard]'"
            ) from exc
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise GradientFlowError(f"TensorBoard log_dir {self.log_dir} is not a folder")
        self.metrics = tuple(metrics)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self._last_step: int | None = None

    def write(self, trace: Trace) -> int:
        """Write the rows of ``trace`` after the last step written. Returns how many."""
        rows = np.arange(trace.n_records)
        if self._last_step is not None:
            rows = rows[trace.steps > self._last_step]
        names = [info.name or "(root)" for info in trace.layers]
        ratios = grad_ratio(trace)
        for r in rows.tolist():
            step = int(trace.steps[r])
            for metric in self.metrics:
                self._write_layer_row(trace, metric, r, step, names)
            for name in STEP_TAGS:
                value = float(trace.scalars[name][r])
                if not math.isnan(value):
                    self._writer.add_scalar(name, value, step)
            if np.isfinite(ratios[r]):
                self._writer.add_scalar("grad_ratio/first_over_last", float(ratios[r]), step)
        if rows.size:
            self._last_step = int(trace.steps[rows[-1]])
        self._writer.flush()
        return int(rows.size)

    def _write_layer_row(
        self, trace: Trace, metric: str, r: int, step: int, names: Sequence[str]
    ) -> None:
        values = trace.metrics[metric][r]
        measured_bad = trace.metrics["nonfinite"][r] > 0
        for j, value in enumerate(values):
            # NaN means "not measured", except a gradient norm whose gradient held NaN/Inf.
            if math.isnan(value) and not (metric == "grad_norm" and measured_bad[j]):
                continue
            self._writer.add_scalar(f"{metric}/{names[j]}", float(value), step)

    def write_diagnosis(self, diagnosis: Diagnosis, step: int = 0) -> None:
        """Write the diagnosis as Markdown text under the tag ``diagnosis``."""
        self._writer.add_text("diagnosis", diagnosis_markdown(diagnosis), step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def diagnosis_markdown(diagnosis: Diagnosis) -> str:
    """The diagnosis as Markdown (TensorBoard's text plugin renders it).

    >>> from gradientflow.diagnosis.findings import Diagnosis, Finding
    >>> print(diagnosis_markdown(Diagnosis([Finding("vanishing", "critical", ["fc0"],
    ...       {"ratio": 1e-18}, "Gradients vanish.", ["relu"])])))
    ### Critical: 1 problem found
    <BLANKLINE>
    - **critical · vanishing** in `fc0`: Gradients vanish.
      evidence: ratio = 1e-18; remedies: `relu`
    """
    if diagnosis.verdict == "unknown":
        lines = [f"### Unknown: {_md(diagnosis.reason or 'the run could not be judged')}", ""]
    elif diagnosis.healthy:
        lines = ["### Healthy: no vanishing or exploding gradients found", ""]
    else:
        n = len(diagnosis.at_least("warning"))
        lines = [f"### {str(diagnosis.worst).capitalize()}: {n} problem{'s' * (n != 1)} found", ""]
    for f in diagnosis.findings:
        where = ", ".join(f"`{_code(x)}`" for x in list(f.layers)[:8])
        where += f" and {len(f.layers) - 8} more" if len(f.layers) > 8 else ""
        lines.append(
            f"- **{f.severity} · {_md(f.kind)}**"
            + (f" in {where}" if where else "")
            + f": {_md(f.message)}"
        )
        extra = []
        if f.evidence:
            extra.append(
                "evidence: "
                + "; ".join(f"{_md(str(k))} = {_fmt(v)}" for k, v in f.evidence.items())
            )
        if f.remedies:
            extra.append("remedies: " + ", ".join(f"`{_code(r)}`" for r in f.remedies))
        if extra:
            lines.append("  " + "; ".join(extra))
    return "\n".join(lines)


#: Markdown's metacharacters (links, emphasis, code, table cells, escapes), each shown
#: literally when a backslash precedes it.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()|{}#!])")


def _md(text: Any) -> str:
    r"""Text shown literally by Markdown outside code spans: control characters escaped, every
    metacharacter backslash-escaped, ``& < >`` as HTML entities (no link, emphasis or HTML).

    >>> print(_md("[x](http://e.x) a*b_c <fc>"))
    \[x\]\(http://e.x\) a\*b\_c &lt;fc&gt;
    """
    escaped = _MD_SPECIAL.sub(r"\\\1", printable(text))
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: Any) -> str:
    """Text inside a Markdown code span: shown literally (Markdown escapes ``& < >`` there
    itself), control characters escaped, a backtick (which would end the span) as ``'``."""
    return printable(text).replace("`", "'")


def _fmt(value: Any) -> str:
    return _md(sig3(value, missing="nan"))
