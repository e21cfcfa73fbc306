"""What the trackers share: the scalars of a chunk, the final diagnosis, the findings table.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0, 1], grad_norm=[[1e-3, 1.0], [2e-3, 0.5]],
...                 loss=[2.0, 1.5])
>>> [(step, sorted(row)) for step, row in scalar_rows(t)][0]
(0, ['grad_norm/fc1', 'grad_norm/fc2', 'loss'])
>>> dict(scalar_rows(t))[1]["grad_norm/fc2"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from gradientflow.recorder import Flush
from gradientflow.trace import Trace

LAYER_KEYS: tuple[str, ...] = ("grad_norm", "rel_update")
STEP_KEYS: tuple[str, ...] = ("loss", "global_grad_norm")


def scalar_rows(
    trace: Trace,
    layer_keys: Sequence[str] = LAYER_KEYS,
    step_keys: Sequence[str] = STEP_KEYS,
    *,
    prefix: str = "",
    keep_nonfinite: bool = True,
    step_offset: int = 0,
) -> Iterator[tuple[int, dict[str, float]]]:
    """``(step, {key: value})`` per recorded step: the scalars a logger writes.

    Keys are ``prefix + metric/layer`` and ``prefix + scalar``; a value not measured (NaN) is
    left out, except, with ``keep_nonfinite``, the gradient norm of a NaN/Inf gradient (the
    trackers show it as measured). Columns the trace lacks are skipped.
    """
    names = [info.name or "(root)" for info in trace.layers]
    layer_keys = [k for k in layer_keys if k in trace.metrics]
    step_keys = [k for k in step_keys if k in trace.scalars]
    for r in range(trace.n_records):
        row: dict[str, float] = {}
        bad = trace.metrics["nonfinite"][r] > 0 if keep_nonfinite else None
        for metric in layer_keys:
            for j, value in enumerate(trace.metrics[metric][r].tolist()):
                if not math.isnan(value) or (bad is not None and metric == "grad_norm" and bad[j]):
                    row[f"{prefix}{metric}/{names[j]}"] = value
        for name in step_keys:
            value = float(trace.scalars[name][r])
            if not math.isnan(value):
                row[f"{prefix}{name}"] = value
        yield int(trace.steps[r]) + step_offset, row


def chunk_rows(event: Flush) -> Iterator[tuple[int, dict[str, float]]]:
    """The scalar rows of one flushed chunk."""
    if event.layers and event.chunk:
        yield from scalar_rows(Trace.concat(event.layers, [event.chunk]))


def final_diagnosis(event: Flush) -> Any:
    """The Diagnosis of the whole run at close, or None when nothing was recorded."""
    if not event.layers or not event.trace().n_records:
        return None
    return event.diagnose()


def findings_table(diagnosis: Any) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the findings (one row per finding), for a logger's table."""
    from gradientflow._format import printable

    columns = ["severity", "kind", "layers", "message", "evidence", "remedies"]
    rows = [
        [
            f.severity,
            f.kind,
            ", ".join(f.layers),
            f.message,
            "; ".join(f"{k} = {printable(v)}" for k, v in f.evidence.items()),
            ", ".join(f.remedies),
        ]
        for f in diagnosis.findings
    ]
    return columns, rows
