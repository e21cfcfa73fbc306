"""Findings and the Diagnosis: what the rules conclude from a Trace.

A :class:`Finding` is one verdict: what is wrong (``kind``), how bad (``severity``), where
(``layers``, input to output), the numbers it rests on (``evidence``), a message a newcomer
understands, and the names of remedies worth trying, best first.

>>> f = Finding("vanishing", "critical", ["fc0"], {"ratio": 1e-18}, "Gradients vanish.",
...             ["swap_activation:relu"])
>>> d = Diagnosis([f])
>>> d.healthy, d.worst
(False, 'critical')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gradientflow.jsonsafe import json_safe

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for critical."""
    return _RANK[severity]


@dataclass
class Finding:
    """One verdict with its evidence."""

    kind: str
    severity: Severity
    layers: list[str]
    evidence: dict[str, Any]
    message: str
    remedies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            from gradientflow.errors import GradientFlowError

            raise GradientFlowError(
                f"Finding {self.kind!r}: severity must be one of {list(SEVERITIES)}, "
                f"got {self.severity!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "layers": list(self.layers),
            "evidence": json_safe(self.evidence),
            "message": self.message,
            "remedies": list(self.remedies),
        }

    def __str__(self) -> str:
        from gradientflow.report.terminal import render_finding

        return render_finding(self)

    def _repr_html_(self) -> str:
        from gradientflow.report.html_display import finding_html

        return finding_html(self)


Verdict = Literal["healthy", "unhealthy", "unknown"]


@dataclass
class Diagnosis:
    """All findings for one trace, most severe first.

    ``reason`` says why the trace cannot be judged (its recording failed, it is empty): the
    verdict is then ``"unknown"`` unless a finding at warning or above was made anyway.

    >>> d = Diagnosis([], reason="the trace is empty (no recorded step)")
    >>> d.verdict, d.healthy
    ('unknown', False)
    """

    findings: list[Finding]
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=lambda f: -severity_rank(f.severity))

    @property
    def verdict(self) -> Verdict:
        """``"unhealthy"`` with a finding at warning or above; else ``"unknown"`` when the
        trace could not be judged (see ``reason``); else ``"healthy"``."""
        if any(f.severity != "info" for f in self.findings):
            return "unhealthy"
        return "unknown" if self.reason else "healthy"

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or critical and the trace could be judged."""
        return self.verdict == "healthy"

    @property
    def worst(self) -> str | None:
        """Highest severity among the findings, or None when there are none."""
        return self.findings[0].severity if self.findings else None

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def at_least(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if severity_rank(f.severity) >= severity_rank(severity)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "verdict": self.verdict,
            "reason": self.reason,
            "worst": self.worst,
            "findings": [f.to_dict() for f in self.findings],
            "meta": json_safe(self.meta),
        }

    def __str__(self) -> str:
        """The verdict and the findings with their prescriptions, as ``gradientflow diagnose``
        prints them (without colour)."""
        from gradientflow.report.terminal import render_diagnosis

        return render_diagnosis(self, color=False)

    def _repr_html_(self) -> str:
        from gradientflow.report.html_display import diagnosis_html

        return diagnosis_html(self)
