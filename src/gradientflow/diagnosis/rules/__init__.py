"""The rules: each module here defines ``rule(trace) -> list[Finding]``, a pure function, and
``REMEDIES``: for each finding kind it reports, the remedy names worth trying, best first.

A new rule is one file in this folder and one name in :data:`RULE_MODULES`.

>>> default_remedies()["exploding"]
['clip_gradients', 'lower_lr', 'add_batchnorm']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gradientflow.diagnosis.findings import Finding
from gradientflow.trace import Trace

Rule = Callable[[Trace], list[Finding]]

RULE_MODULES: tuple[str, ...] = (
    "nonfinite",
    "vanishing",
    "exploding",
    "dead_units",
    "saturation",
    "weights_to_zero",
    "stagnation",
    "through_time",
    "attention_logits",
    "attention_entropy",
    "output_logits",
    "post_ln",
)


def all_rules() -> dict[str, Rule]:
    """Every registered rule, by module name."""
    return {
        name: importlib.import_module(f"gradientflow.diagnosis.rules.{name}").rule
        for name in RULE_MODULES
    }


def default_remedies() -> dict[str, list[str]]:
    """Finding kind -> the remedies its rule lists when it knows nothing more specific."""
    out: dict[str, list[str]] = {}
    for name in RULE_MODULES:
        module = importlib.import_module(f"gradientflow.diagnosis.rules.{name}")
        for kind, remedies in module.REMEDIES.items():
            out[kind] = list(remedies)
    return out
