"""``prescribe``: from a Diagnosis and the model to a ranked list of remedies that apply.

Each finding lists remedy names, best first. A remedy's score sums, over the findings that name
it, the finding's severity weight (critical 3, warning 1, info 0.25) divided by 1 + its position
in that finding's list. Two corrections come from the model's structure:

* a model whose activations are all sigmoid cannot be rescued by an init alone: the per-layer
  gain χ₁ = σ_w²·E[σ'(z)²] stays at or below 0.10 even with He init (SCIENCE.md), so ``reinit:*``
  is ranked down (×0.25) when the finding is vanishing gradients;
* a vanilla ``nn.RNN`` with a vanishing or exploding finding ranks ``to_lstm`` / ``to_gru`` up.

Remedies that do not apply to the model (no ``nn.RNN`` for ``to_lstm``, no Sequential for
``add_residual``...) are left out; a finding without names falls back to :data:`DEFAULTS`.

>>> from torch import nn
>>> from gradientflow.diagnosis.findings import Diagnosis, Finding
>>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Sigmoid(),
...                       nn.Linear(4, 2))
>>> d = Diagnosis([Finding("vanishing", "critical", ["0"], {}, "Gradients vanish.",
...                        ["swap_activation:relu", "add_batchnorm", "to_lstm"])])
>>> [r.name for r in prescribe(d, model)][:2]
['swap_activation:relu', 'add_batchnorm']
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from torch import nn

from gradientflow.diagnosis.findings import Diagnosis
from gradientflow.diagnosis.rules import default_remedies
from gradientflow.errors import GradientFlowError
from gradientflow.kinds import activation_of_module
from gradientflow.remedies.registry import REGISTRY
from gradientflow.remedies.remedy import Remedy

if TYPE_CHECKING:
    from gradientflow.preflight.result import Preflight

SEVERITY_WEIGHT = {"critical": 3.0, "warning": 1.0, "info": 0.25}

#: Remedies for a finding that names none, best first: each rule's own list
#: (``REMEDIES`` in its file under :mod:`gradientflow.diagnosis.rules`), by finding kind.
DEFAULTS: dict[str, list[str]] = default_remedies()

_VANISHING = {"vanishing", "weights_to_zero", "saturation"}


def _structure_factor(name: str, kind: str, model: nn.Module) -> float:
    """The structural corrections described in the module docstring."""
    kinds = {activation_of_module(m) for m in model.modules()} - {None}
    if name.startswith("reinit:") and kind in _VANISHING and kinds == {"sigmoid"}:
        return 0.25
    has_rnn = any(isinstance(m, nn.RNN) for m in model.modules())
    if name in ("to_lstm", "to_gru") and has_rnn and "vanishing" in kind:
        return 2.0
    return 1.0


def _first_sentence(text: str) -> str:
    head = text.strip().split(". ")[0].rstrip(".")
    return head if len(head) <= 160 else head[:157] + "..."


def prescribe(
    diagnosis: Diagnosis | Preflight, model: nn.Module, *, limit: int | None = None
) -> list[Remedy]:
    """Remedies for ``diagnosis`` (or a :func:`gradientflow.preflight` result: its findings at
    init) that apply to ``model``, best first.

    Each returned :class:`Remedy` carries ``why`` (the findings that point to it, in words),
    ``findings`` (their kinds) and ``score``. ``limit`` (a whole number >= 0) keeps only the
    first few. A healthy diagnosis (no warning or critical finding) gets an empty list; a
    warning or critical finding whose remedy names are all unknown (a typo) is an error.
    """
    from gradientflow.preflight.result import Preflight

    if isinstance(diagnosis, Preflight):
        diagnosis = Diagnosis(list(diagnosis.findings), reason=diagnosis.reason)
    if not isinstance(diagnosis, Diagnosis) or not isinstance(model, nn.Module):
        raise GradientFlowError(
            "prescribe(diagnosis, model): expected a Diagnosis (or a Preflight) and an "
            "nn.Module, got "
            f"{type(diagnosis).__name__} and {type(model).__name__}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise GradientFlowError(
            f"prescribe(): `limit` must be a whole number >= 0 (or None for all), got {limit!r}"
        )
    scores: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    kinds: dict[str, list[str]] = {}
    findings = diagnosis.findings
    for f in findings:
        weight = SEVERITY_WEIGHT.get(f.severity, 0.0)
        names = list(f.remedies) or DEFAULTS.get(f.kind, [])
        if f.remedies and f.severity != "info" and not any(n in REGISTRY for n in names):
            raise GradientFlowError(
                f"prescribe(): the {f.severity} finding {f.kind!r} names only unknown remedies "
                f"{names}{_close(names)}; the registered ones are {sorted(REGISTRY)}"
            )
        for pos, name in enumerate(names):
            if name not in REGISTRY:
                continue
            gain = weight / (1 + pos) * _structure_factor(name, f.kind, model)
            scores[name] = scores.get(name, 0.0) + gain
            reasons.setdefault(name, []).append(
                f"{f.kind} ({f.severity}): {_first_sentence(f.message)}"
            )
            kinds.setdefault(name, []).append(f.kind)
    if not any(f.severity in ("warning", "critical") for f in findings):
        return []
    order = list(REGISTRY)
    ranked = sorted(scores, key=lambda n: (-scores[n], order.index(n)))
    out = []
    for name in ranked:
        remedy = REGISTRY[name]
        if remedy.applicable(model) is not None:
            continue
        out.append(remedy.with_evidence("; ".join(reasons[name]), kinds[name], scores[name]))
    return out[:limit] if limit is not None else out


def _close(names: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for the first name close to a registered one."""
    for name in names:
        match = difflib.get_close_matches(name, list(REGISTRY), n=1)
        if match:
            return f" (did you mean {match[0]!r}?)"
    return ""


def not_applicable(diagnosis: Diagnosis, model: nn.Module) -> dict[str, str]:
    """Remedies the findings name that cannot be applied to ``model``, with the reason."""
    out: dict[str, str] = {}
    for f in diagnosis.findings:
        for name in list(f.remedies) or DEFAULTS.get(f.kind, []):
            remedy = REGISTRY.get(name)
            reason = remedy.applicable(model) if remedy is not None else "unknown remedy"
            if reason is not None:
                out[name] = reason
    return out
