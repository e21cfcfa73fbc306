"""The result of a trial: one row per candidate (baseline and each remedy), best first.

>>> rows = [TrialRow("baseline", final_loss=2.3, best_loss=2.3, metric=0.1),
...         TrialRow("add_batchnorm", final_loss=0.2, best_loss=0.1, metric=0.93)]
>>> table = TrialTable(rows, metric_name="accuracy")
>>> [r.name for r in table]
['add_batchnorm', 'baseline']
>>> table["baseline"].metric
0.1
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from gradientflow.diagnosis.findings import Diagnosis
from gradientflow.errors import GradientFlowError
from gradientflow.jsonsafe import json_safe
from gradientflow.trial.run import TrialRun

_SORT_KEYS = ("metric", "final_loss", "best_loss", "grad_ratio", "wall_s", "name")


def _nan_last(value: float, descending: bool) -> tuple[int, float]:
    if value is None or not math.isfinite(value):
        return (1, 0.0)
    return (0, -value if descending else value)


@dataclass
class TrialRow:
    """One candidate, averaged over seeds (``per_seed`` keeps each seed's numbers).

    * ``final_loss``: mean training loss over the last 5% of steps; ``best_loss``: the lowest
      loss of a moving average over 5% of the steps (NaN/inf when training diverged).
    * ``metric``: ``evaluate(model)`` after training (higher is better), NaN without evaluate.
    * ``grad_ratio``: ‖grad first layer‖ / ‖grad last layer‖ at the first step (1 is ideal,
      1e-18 is the vanishing demo); ``grad_ratio_median``: its median over the recorded steps.
    * ``findings``: finding kinds (warning or worse) still diagnosed on the remedied run.
    """

    name: str
    title: str = ""
    lr: float = math.nan
    final_loss: float = math.nan
    best_loss: float = math.nan
    metric: float = math.nan
    grad_ratio: float = math.nan
    grad_ratio_median: float = math.nan
    findings: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    diverged: bool = False
    error: str = ""
    per_seed: list[TrialRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(json_safe(asdict(self)))


class TrialTable:
    """Rows best first: by ``metric`` when an evaluate function was given, else final loss."""

    def __init__(
        self,
        rows: list[TrialRow],
        *,
        metric_name: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.rows = list(rows)
        self.metric_name = metric_name
        self.meta = dict(meta or {})
        #: the baseline's Diagnosis (set by ``trial``), what the prescriptions came from
        self.diagnosis: Diagnosis | None = None
        self.sort("metric" if any(math.isfinite(r.metric) for r in rows) else "final_loss")

    def sort(self, by: str = "metric", *, descending: bool | None = None) -> TrialTable:
        """Sort in place by a column (NaN last, ties by name); returns self."""
        if by not in _SORT_KEYS:
            raise GradientFlowError(f"TrialTable.sort: by must be one of {_SORT_KEYS}, got {by!r}")
        if by == "name":
            self.rows.sort(key=lambda r: r.name)
            return self
        desc = (by == "metric") if descending is None else descending
        self.rows.sort(
            key=lambda r: (*_nan_last(getattr(r, by), desc), r.name != "baseline", r.name)
        )
        return self

    @property
    def best(self) -> TrialRow:
        return self.rows[0]

    @property
    def baseline(self) -> TrialRow | None:
        return next((r for r in self.rows if r.name == "baseline"), None)

    def __iter__(self) -> Iterator[TrialRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> TrialRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric_name,
            "meta": json_safe(self.meta),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __str__(self) -> str:
        from gradientflow._format import printable

        metric = printable(self.metric_name or "metric")
        head = [
            "remedy",
            "lr",
            "final loss",
            "best loss",
            metric,
            "grad first/last",
            "still found",
            "time s",
        ]
        body = [
            [
                printable(r.name),
                f"{r.lr:.3g}",
                _num(r.final_loss),
                _num(r.best_loss),
                _num(r.metric),
                _sci(r.grad_ratio),
                printable(", ".join(r.findings)) or ("(error)" if r.error else "-"),
                f"{r.wall_s:.1f}",
            ]
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
        lines = [
            "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
            for row in [head, *body]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        errors = [f"  {printable(r.name)}: {printable(r.error)}" for r in self.rows if r.error]
        return "\n".join(lines + (["errors:", *errors] if errors else []))

    def __repr__(self) -> str:
        best = self.rows[0].name if self.rows else None
        return f"TrialTable({len(self.rows)} rows, best={best!r})"

    def _repr_html_(self) -> str:
        from gradientflow.report.html_display import trial_html

        return trial_html(self)


def _num(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}" if math.isfinite(x) else str(x)


def _sci(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1e}" if math.isfinite(x) else str(x)
