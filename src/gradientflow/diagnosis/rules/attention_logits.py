"""Rule ``attention_logit_growth``: attention logits grow until the softmax is one-hot.

Dehghani et al. (2023, ViT-22B §3.1.1) saw the attention logits of a large ViT grow without
bound and the attention entropy collapse, so training diverged; Wortsman et al. (2023) showed
the same in small transformers at high learning rates, and that LayerNorm on queries and keys
(qk-layernorm) removes it. Reads ``attn/<layer>/max_logit`` from the attention probe
(:mod:`gradientflow.probes.attention`).

Thresholds. A softmax over S keys is one-hot within 1% once its top logit leads every other by
g(S) = log((S - 1)/0.01) (8.0 for S = 32, 11.5 for S = 1024). Logits q·k/√d of a trained layer
sit around 0, so a largest logit of g(S) already allows a one-hot query; a useful sharp head
needs no more. We warn when the latest largest logit (median of the last 3 samples) exceeds
**10 g(S)** — ten times what saturation needs, where the softmax is flat to e^(-70) — *and* has
grown at least **10-fold** since the first sample (so a model that starts sharp by design is not
blamed); critical past **100 g(S)** or when non-finite. In our small LMs (lab
``attention-logit-growth``) healthy runs stay below 2 g(S); unstable ones reach 10³-10⁴ g(S).

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> mx = np.array([[3.0, 2.0], [850.0, 5.0], [900.0, 6.0], [990.0, 6.0]])
>>> ex = {"attn/l0/max_logit": mx, "attn/l0/steps": np.arange(4) * 50,
...       "attn/l0/seq_len": np.array([32] * 4)}
>>> [f] = rule(Trace.build(["l0"], steps=[0], extras=ex))
>>> f.kind, f.severity, f.evidence["worst_head"], f.remedies[0]
('attention_logit_growth', 'critical', 0, 'qk_layernorm')
"""

from __future__ import annotations

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._attention import (
    AttentionSeries,
    attention_series,
    recent,
    saturating_gap,
)
from gradientflow.diagnosis.rules._common import fmt, q
from gradientflow.trace import Trace

#: Warning: latest largest logit above this many saturating gaps g(S) ...
WARN_GAPS = 10.0
#: ... and at least this many times its first sample.
MIN_GROWTH = 10.0
#: Critical: above this many g(S).
CRITICAL_GAPS = 100.0
REMEDIES: dict[str, list[str]] = {
    "attention_logit_growth": ["qk_layernorm", "lower_lr", "warmup", "clip_gradients"]
}


def _layer_state(s: AttentionSeries) -> tuple[float, float, int] | None:
    """(latest largest logit, growth since the first sample, worst head) of one layer."""
    if s.max_logit is None or len(s.steps) < 2:
        return None
    last = recent(s.max_logit)
    head = int(np.nanargmax(last)) if np.isfinite(last).any() else 0
    first = float(np.nanmax(np.abs(s.max_logit[0]))) if np.isfinite(s.max_logit[0]).any() else 0
    growth = float(last[head]) / max(first, 1e-12)
    return float(last[head]), growth, head


def rule(trace: Trace) -> list[Finding]:
    """One finding for the attention layers whose logits grew into saturation (if any)."""
    hits: dict[str, tuple[float, float, int, AttentionSeries]] = {}
    for s in attention_series(trace.extras):
        state = _layer_state(s)
        if state is None:
            continue
        value, growth, head = state
        gap = saturating_gap(s.keys)
        if not np.isfinite(value) or (value >= WARN_GAPS * gap and growth >= MIN_GROWTH):
            hits[s.layer] = (value, growth, head, s)
    if not hits:
        return []
    worst = max(hits, key=lambda k: hits[k][0] / saturating_gap(hits[k][3].keys))
    value, growth, head, s = hits[worst]
    gap = saturating_gap(s.keys)
    huge = not np.isfinite(value) or value >= CRITICAL_GAPS * gap
    severity: Severity = "critical" if huge else "warning"
    message = (
        f"Attention logits grow out of range: in {q(worst)} head {head} the largest attention "
        f"logit reached {fmt(value)} ({fmt(growth)}x its first value), while {fmt(gap)} "
        f"already makes a softmax over {s.keys} keys one-hot. Such a head attends to a single "
        "key and passes almost no gradient to the others; training at this learning rate is "
        "unstable (Dehghani et al. 2023; Wortsman et al. 2023). LayerNorm on queries and keys "
        "(qk-layernorm) bounds the logits; a lower learning rate or a warmup also helps."
    )
    evidence = {
        "layer": worst,
        "worst_head": head,
        "max_logit": value,
        "growth": growth,
        "saturating_gap": gap,
        "seq_len": s.keys,
        "step": int(s.steps[-1]),
        "layers_max_logit": {k: v[0] for k, v in sorted(hits.items())},
    }
    return [
        Finding(
            "attention_logit_growth",
            severity,
            sorted(hits),
            evidence,
            message,
            list(REMEDIES["attention_logit_growth"]),
        )
    ]
