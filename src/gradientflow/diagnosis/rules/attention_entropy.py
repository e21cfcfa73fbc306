"""Rule ``attention_entropy_collapse``: attention heads whose entropy fell to almost 0.

Zhai et al. (2023, "Stabilizing transformer training by preventing attention entropy
collapse") found that unstable transformer training goes with pathologically low attention
entropy: each query puts all its weight on one key, the softmax's Jacobian vanishes, and the
loss stalls or diverges; Dehghani et al. (2023) and Wortsman et al. (2023) cure it with
qk-layernorm. Reads ``attn/<layer>/entropy_mean`` (nats, mean over queries) from the attention
probe (:mod:`gradientflow.probes.attention`).

Thresholds. Uniform attention over S keys has entropy log S (with a causal mask the mean over
queries is about log S - 1); attention that puts 1 - ε on one key and spreads ε over the rest
has about ε·(1 + log((S-1)/ε)) nats. A head has **collapsed** when its latest mean entropy
(median of the last 3 samples) is below **0.05 log S** (0.17 nats for S = 32: more than ~97% of
the weight on one key for the average query) *while* its first sample was above **0.5 log S**
("it was high": the head started spread out). Warning when one head collapsed; critical when at
least half of all heads did. Healthy small LMs keep their heads above 0.3 log S (lab
``attention-logit-growth``).

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> ent = np.array([[2.5, 2.4], [0.02, 2.0], [0.01, 1.9], [0.01, 1.9]])
>>> ex = {"attn/l0/entropy_mean": ent, "attn/l0/steps": np.arange(4) * 50,
...       "attn/l0/seq_len": np.array([32] * 4)}
>>> [f] = rule(Trace.build(["l0"], steps=[0], extras=ex))
>>> f.kind, f.severity, f.evidence["collapsed_heads"]
('attention_entropy_collapse', 'critical', {'l0': [0]})
"""

from __future__ import annotations

import math

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._attention import attention_series, recent
from gradientflow.diagnosis.rules._common import fmt, q
from gradientflow.trace import Trace

#: Collapsed: latest mean entropy below this fraction of log S ...
COLLAPSED = 0.05
#: ... while the first sample was above this fraction of log S.
WAS_HIGH = 0.5
#: Critical when at least this fraction of all heads collapsed.
CRITICAL_SHARE = 0.5
REMEDIES: dict[str, list[str]] = {
    "attention_entropy_collapse": ["qk_layernorm", "lower_lr", "warmup"]
}


def rule(trace: Trace) -> list[Finding]:
    """One finding listing every collapsed head (none if no head collapsed)."""
    collapsed: dict[str, list[int]] = {}
    lowest: tuple[float, str, int, int] | None = None
    total = 0
    for s in attention_series(trace.extras):
        if s.entropy_mean is None or len(s.steps) < 2 or s.keys < 2:
            continue
        total += s.heads
        log_s = math.log(s.keys)
        last, first = recent(s.entropy_mean), s.entropy_mean[0]
        heads = [
            h for h in range(s.heads) if last[h] < COLLAPSED * log_s and first[h] > WAS_HIGH * log_s
        ]
        if heads:
            collapsed[s.layer] = heads
            h = min(heads, key=lambda i: last[i])
            if lowest is None or last[h] < lowest[0]:
                lowest = (float(last[h]), s.layer, h, s.keys)
    if not collapsed or lowest is None:
        return []
    n = sum(len(v) for v in collapsed.values())
    severity: Severity = "critical" if n >= CRITICAL_SHARE * total else "warning"
    value, layer, head, keys = lowest
    message = (
        f"Attention entropy collapse: {n} of {total} attention heads now put almost all their "
        f"weight on a single key (head {head} of {q(layer)}: mean entropy {fmt(value)} nats, "
        f"against {fmt(math.log(keys))} for uniform attention over {keys} keys), though they "
        "started spread out. A one-hot softmax passes almost no gradient, so these heads stop "
        "learning and training becomes unstable (Zhai et al. 2023; Dehghani et al. 2023). "
        "LayerNorm on queries and keys (qk-layernorm) keeps the logits, and so the entropy, "
        "in range (Wortsman et al. 2023); a lower learning rate also helps."
    )
    evidence = {
        "collapsed_heads": collapsed,
        "n_collapsed": n,
        "n_heads": total,
        "lowest_entropy": value,
        "layer": layer,
        "head": head,
        "log_seq_len": float(np.log(keys)),
    }
    layers = sorted(collapsed)
    return [
        Finding(
            "attention_entropy_collapse",
            severity,
            layers,
            evidence,
            message,
            list(REMEDIES["attention_entropy_collapse"]),
        )
    ]
