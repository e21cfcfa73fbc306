"""``Preflight``: what one look at a model at init found, readable with ``str`` and as JSON.

>>> import torch
>>> from gradientflow.preflight import preflight
>>> from gradientflow.demo import mlp
>>> pf = preflight(mlp(), torch.randn(64, 64))
>>> pf.healthy, pf.verdict, [f.kind for f in pf.findings][:1]
(False, 'unhealthy', ['vanishing'])
>>> print(str(pf).splitlines()[0])
Preflight of Sequential: 20 weight layers, probe batch of 64, random output probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gradientflow.diagnosis.findings import Finding, Verdict, severity_rank
from gradientflow.jsonsafe import json_safe
from gradientflow.preflight.measure import LayerStat
from gradientflow.preflight.verdict import Prediction, fmt

#: Tables longer than this print their first and last rows only.
MAX_ROWS = 30


@dataclass
class Preflight:
    """The result of :func:`~gradientflow.preflight.preflight`.

    * ``layers``: one :class:`LayerStat` per weight layer in forward order (activation RMS,
      ``∂L/∂s`` RMS, gain ``‖∂L/∂s_l‖² / ‖∂L/∂s_{l+1}‖²`` to the next layer);
    * ``prediction``: the mean-field prediction (``chi1`` None where theory does not apply);
    * ``measured_chi1``: the geometric mean of the measured gains past the first third;
    * ``jacobian``: the first example's input–output Jacobian singular values, or None;
    * ``recurrent``: spectral radius and horizon per RNN/LSTM/GRU layer;
    * ``findings``: the verdict, as the diagnosis' Findings (flow first, then the lint);
    * ``reason``: why the flow could not be judged (fewer than two weight layers measured), as
      a diagnosis' ``reason``: the verdict is then ``"unknown"``, not ``"healthy"``.
    """

    model: str
    layers: list[LayerStat]
    prediction: Prediction
    measured_chi1: float | None
    first_to_last: float | None
    findings: list[Finding]
    jacobian: dict[str, Any] | None = None
    recurrent: list[dict[str, Any]] = field(default_factory=list)
    batch: int | None = None
    probe: str = "random output probe"
    reason: str | None = None

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=lambda f: -severity_rank(f.severity))

    @property
    def chi1(self) -> float | None:
        """Mean-field χ₁ (per-layer gain of the squared gradient norm), None off theory."""
        return self.prediction.chi1

    @property
    def depth_scale(self) -> float | None:
        """ξ = -1/ln χ₁ (1/ln χ₁ above 1), infinite at χ₁ = 1."""
        return self.prediction.depth_scale

    @property
    def max_trainable_depth(self) -> float | None:
        """6ξ: the depth beyond which a net at this init does not train."""
        return self.prediction.max_trainable_depth

    @property
    def depth(self) -> int:
        """The model's actual depth: its number of weight layers."""
        return len(self.layers)

    @property
    def verdict(self) -> Verdict:
        """``"unhealthy"`` with a finding at warning or above; else ``"unknown"`` when the flow
        could not be judged (see ``reason``); else ``"healthy"`` (as a Diagnosis)."""
        if any(f.severity != "info" for f in self.findings):
            return "unhealthy"
        return "unknown" if self.reason else "healthy"

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or critical and the flow could be judged."""
        return self.verdict == "healthy"

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        p = self.prediction
        doc = {
            "model": self.model,
            "depth": self.depth,
            "batch": self.batch,
            "probe": self.probe,
            "healthy": self.healthy,
            "verdict": self.verdict,
            "reason": self.reason,
            "chi1": p.chi1,
            "measured_chi1": self.measured_chi1,
            "depth_scale": self.depth_scale,
            "max_trainable_depth": self.max_trainable_depth,
            "theory": {**p.__dict__},
            "first_to_last": self.first_to_last,
            "layers": [s.__dict__ for s in self.layers],
            "jacobian": self.jacobian,
            "recurrent": self.recurrent,
            "findings": [f.to_dict() for f in self.findings],
        }
        return dict(json_safe(doc))

    def _theory_lines(self) -> list[str]:
        p = self.prediction
        measured = "" if self.measured_chi1 is None else f" (measured {fmt(self.measured_chi1)})"
        if p.chi1 is None:
            line = f"  mean field: does not apply ({p.reason})"
            if self.measured_chi1 is not None:
                line += f"; measured per-layer gain {fmt(self.measured_chi1)}"
            return [line]
        depth = self.max_trainable_depth
        limit = "any depth" if depth is None or not math.isfinite(depth) else f"~{depth:.0f}"
        return [
            f"  mean field: {p.activation}, σ_w² = {p.sigma_w2:.3g}, σ_b² = {p.sigma_b2:.2g}, "
            f"q* = {fmt(p.q_star)} -> χ₁ = {p.chi1:.3f}{measured}",
            f"  depth scale ξ = {fmt(self.depth_scale)}: trainable up to {limit} layers; "
            f"this net has {self.depth}",
        ]

    def _extra_lines(self) -> list[str]:
        lines = []
        if self.reason:
            lines.append(f"  not judged: {self.reason}")
        missed = [s.name for s in self.layers if not s.measured]
        if missed:
            names = ", ".join(repr(n) for n in missed[:5]) + (", ..." if len(missed) > 5 else "")
            lines.append(f"  not measured (no gradient reached them): {names}")
        if self.first_to_last is not None:
            lines.append(f"  first/last ‖∂L/∂s‖: {fmt(self.first_to_last)}")
        if self.jacobian is not None:
            j = self.jacobian
            lines.append(
                f"  input-output Jacobian ({j['shape'][0]}x{j['shape'][1]}, first example): "
                f"singular values {fmt(j['min'])} .. {fmt(j['max'])}, spread {fmt(j['spread'])}"
            )
        for r in self.recurrent:
            horizon = "" if r["horizon"] is None else f", horizon ~{fmt(r['horizon'])} steps"
            jac = "" if r["jacobian_radius"] is None else f", Jacobian {r['jacobian_radius']:.3g}"
            lines.append(
                f"  {r['kind']} '{r['layer']}': spectral radius W_hh {r['w_hh_radius']:.3g}"
                f"{jac}{horizon} ({r['steps']} steps)"
            )
        return lines

    def _table(self) -> list[str]:
        head = f"  {'layer':<18} {'kind':<8} {'fed by':<10} {'σ_w²':>6} {'act RMS':>8} "
        head += f"{'∂L/∂s RMS':>10} {'gain':>7}"
        rows = [head]
        keep: list[int] = list(range(len(self.layers)))
        if len(self.layers) > MAX_ROWS:
            n, half = len(self.layers), MAX_ROWS // 2
            keep = [*range(half), -1, *range(n - half, n)]
        for i in keep:
            if i < 0:
                rows.append("  ...")
                continue
            s = self.layers[i]
            gain = fmt(s.gain) if math.isfinite(s.gain) else "-"
            grad = fmt(s.grad_rms) if s.measured else "-"
            rows.append(
                f"  {s.name[:18]:<18} {s.kind[:8]:<8} {(s.link or '-')[:10]:<10} "
                f"{s.sigma_w2:>6.3g} {fmt(s.act_rms):>8} {grad:>10} {gain:>7}"
            )
        return rows

    def __str__(self) -> str:
        lines = [
            f"Preflight of {self.model}: {self.depth} weight layers, probe batch of "
            f"{self.batch}, {self.probe}.",
            *self._theory_lines(),
            *self._extra_lines(),
            *self._table(),
        ]
        if self.verdict == "unknown":
            lines.append(f"Not judged: {self.reason}.")
        elif not self.findings:
            lines.append("No problem found at init.")
        for f in self.findings:
            lines.append(f"[{f.severity}] {f.kind}: {f.message}")
            if f.remedies:
                lines.append(f"    remedies: {', '.join(f.remedies)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from gradientflow.report.html_display import preflight_html

        return preflight_html(self, [*self._theory_lines(), *self._extra_lines()])
