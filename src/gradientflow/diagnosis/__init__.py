"""Diagnosis: the rules turn a Trace into Findings with evidence, a plain message and remedies.

>>> from gradientflow.trace import Trace
>>> g = [[0.14 ** (9 - j) for j in range(10)]] * 3
>>> d = diagnose(Trace.build([f"fc{j}" for j in range(10)], steps=range(3), out_grad_norm=g))
>>> d.healthy, [f.kind for f in d.findings]
(False, ['vanishing'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np

from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.diagnosis.rules import RULE_MODULES
from gradientflow.errors import GradientFlowError
from gradientflow.trace import Trace

__all__ = ["Diagnosis", "Finding", "diagnose", "unknown_reason"]

RuleLike = str | Callable[[Trace], list[Finding]]


def _load(name: str) -> Callable[[Trace], list[Finding]]:
    module = importlib.import_module(f"gradientflow.diagnosis.rules.{name}")
    rule: Callable[[Trace], list[Finding]] = module.rule
    return rule


def diagnose(trace: Trace, *, rules: Sequence[RuleLike] | None = None) -> Diagnosis:
    """Run the rules (all registered ones by default) on ``trace``.

    ``rules`` may name registered rules (``["vanishing", "exploding"]``) or pass functions
    ``Trace -> list[Finding]``.

    >>> from gradientflow.trace import Trace
    >>> diagnose(Trace.build(["fc"], steps=[0], grad_norm=[[1.0]])).healthy
    True
    """
    if not isinstance(trace, Trace):
        raise GradientFlowError(f"diagnose(): expected a Trace, got {type(trace).__name__}")
    chosen: Sequence[RuleLike] = RULE_MODULES if rules is None else rules
    findings: list[Finding] = []
    ran: list[str] = []
    for item in chosen:
        if isinstance(item, str):
            if item not in RULE_MODULES:
                raise GradientFlowError(
                    f"diagnose(): no rule named {item!r}; known: {list(RULE_MODULES)}"
                )
            fn = _load(item)
            label = item
        elif callable(item):
            fn, label = item, getattr(item, "__module__", "custom").rsplit(".", 1)[-1]
        else:
            raise GradientFlowError(
                f"diagnose(): a rule must be a name or a function, got {item!r}"
            )
        findings.extend(fn(trace))
        ran.append(label)
    steps = trace.steps
    meta = {
        "rules": ran,
        "recorded_steps": trace.n_records,
        "first_step": int(steps[0]) if steps.size else None,
        "last_step": int(steps[-1]) if steps.size else None,
        "layers": trace.n_layers,
    }
    meta["not_judged"] = not_judged(trace)
    return Diagnosis(findings, meta=meta, reason=unknown_reason(trace))


def not_judged(trace: Trace) -> dict[str, str]:
    """The questions ``trace`` is too small to answer, each with the reason (for ``meta``).

    >>> not_judged(Trace.build(["fc"], steps=[0], loss=[2.3]))["stagnation"]
    'fewer than 20 logged losses (1)'
    """
    from gradientflow.diagnosis.rules._common import chain_layers
    from gradientflow.diagnosis.rules.stagnation import MIN_RECORDS

    out: dict[str, str] = {}
    n_loss = int(np.isfinite(trace.scalars["loss"]).sum())
    if n_loss < MIN_RECORDS:
        out["stagnation"] = f"fewer than {MIN_RECORDS} logged losses ({n_loss})"
    n_chain = len(chain_layers(trace))
    if n_chain < 3:
        out["depth"] = f"fewer than 3 trainable weight layers in a chain ({n_chain}): the "
        out["depth"] += "vanishing and exploding rules cannot compare depths"
    return out


def unknown_reason(trace: Trace) -> str | None:
    """Why ``trace`` cannot be judged, or None: its recording failed, or it holds nothing.

    >>> unknown_reason(Trace.build(["fc"], steps=[]))
    'the trace is empty: no step was recorded'
    >>> unknown_reason(Trace.build(["fc"], steps=[0], meta={"recording_error": "complex"}))
    'the recording failed: complex'
    >>> unknown_reason(Trace.build(["fc"], grad_norm=[[float("nan")], [float("nan")]]))
    "no gradient norm was measured: every recorded step's grad_norm is NaN"
    """
    error = trace.meta.get("recording_error")
    if error:
        return f"the recording failed: {error}"
    if trace.n_records == 0:
        return "the trace is empty: no step was recorded"
    if trace.n_layers == 0:
        return "the trace has no layer: the model has no parameter that was watched"
    grad = trace.metrics["grad_norm"]
    if not np.isfinite(grad).any() and not np.isinf(grad).any():
        return "no gradient norm was measured: every recorded step's grad_norm is NaN"
    if (grad < 0).any():
        return "grad_norm holds negative values, which no norm has: the trace is damaged"
    return None
