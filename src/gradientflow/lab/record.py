"""The record every lab experiment returns, and how it is written to JSON.

>>> r = ExperimentResult(
...     name="demo", claim="c", source="s", setup={"depth": 3}, measured={"ratio": 0.5},
...     criterion="ratio < 1", passed=True)
>>> ExperimentResult.from_dict(r.to_dict()).passed
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gradientflow.jsonsafe import json_safe


@dataclass
class ExperimentResult:
    """One experiment's outcome: what it claims, what was run, what was measured, the verdict.

    ``measured`` holds plain numbers (or lists/dicts of them); ``paper`` the literature's
    figures to print beside ours; ``figures`` paths of PNG/SVG files the experiment saved.
    ``checks`` lists each part of the criterion with its own verdict. ``negative_control``
    is the same criterion applied to a case where the claim says it must fail (made by
    :func:`control`): ``{"what", "checks", "fails"}``; a criterion that its control passes
    cannot tell the claim from its opposite, so :func:`verdict` fails the experiment then.
    ``seed`` seeds the experiment's models and data order.
    """

    name: str
    claim: str
    source: str
    setup: dict[str, Any]
    measured: dict[str, Any]
    criterion: str
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    paper: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    quick: bool = False
    seconds: float = 0.0
    error: str | None = None
    negative_control: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (numpy scalars and arrays become floats and lists)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentResult:
        return cls(**d)


def check(checks: list[dict[str, Any]], text: str, ok: bool | np.bool_) -> bool:
    """Append one named sub-criterion to ``checks`` and return its verdict.

    >>> cs: list[dict[str, Any]] = []
    >>> check(cs, "1 < 2", 1 < 2), cs
    (True, [{'check': '1 < 2', 'passed': True}])
    """
    checks.append({"check": text, "passed": bool(ok)})
    return bool(ok)


def control(what: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The negative control's record: what it is, the criterion's checks on it, whether it fails.

    >>> control("plain net under the residual criterion", [{"check": "a", "passed": False}])
    {'what': 'plain net under the residual criterion', 'checks': [{'check': 'a', 'passed': \
False}], 'fails': True}
    """
    return {"what": what, "checks": checks, "fails": not all(c["passed"] for c in checks)}


def verdict(checks: list[dict[str, Any]], negative: dict[str, Any]) -> bool:
    """Pass when every check passes *and* the negative control fails the same criterion.

    >>> ok, bad = [{"check": "a", "passed": True}], [{"check": "a", "passed": False}]
    >>> verdict(ok, control("c", bad)), verdict(ok, control("c", ok))
    (True, False)
    >>> verdict(bad, control("c", bad))
    False
    """
    return all(c["passed"] for c in checks) and bool(negative.get("fails"))


def jsonable(obj: Any) -> Any:
    """The lab's records in gradientflow's one JSON convention
    (:func:`gradientflow.jsonsafe.json_safe`): numpy types become numbers and lists, non-finite
    floats the strings "nan", "inf", "-inf".

    >>> jsonable({"a": np.float32(0.5), "b": (1, float("nan"))})
    {'a': 0.5, 'b': [1, 'nan']}
    """
    return json_safe(obj)


def sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant figures (for readable records).

    >>> sig(0.000123456), sig(98765.4)
    (0.000123, 98800.0)
    """
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")
