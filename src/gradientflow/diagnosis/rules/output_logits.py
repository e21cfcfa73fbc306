"""Rule ``output_logit_divergence``: the output logits' normaliser log Z drifts far from 0.

With a cross-entropy loss on logits z, the probability of class i is exp(z_i - log Z) with
log Z = logsumexp(z): the loss does not care where log Z sits, so nothing holds it and, without
weight decay at high learning rates, it can drift until the logits leave the range where
float arithmetic (bf16 above all) resolves their differences and the loss diverges. Chowdhery
et al. (2022, PaLM §5) added the auxiliary loss 1e-4 · log² Z ("z-loss") to hold log Z near 0;
Wortsman et al. (2023) reproduce the divergence in small models and show z-loss removes it.
Reads ``logits/log_z`` (mean over positions per sample) and ``logits/vocab`` from the
attention probe (:mod:`gradientflow.probes.attention`).

Thresholds. Logits near 0 give log Z = log V (4.6 for 100 classes, 10.8 for 50k tokens). We
warn when the latest log Z (median of the last 3 samples) lies more than **max(20, 2 log V)**
from 0 — Z off by a factor e²⁰ ≈ 5·10⁸, past what any vocabulary below 5·10⁸ entries explains —
*and* has moved at least **10** from its first sample (so a model whose logits start offset is
not blamed). Critical beyond **max(50, 4 log V)** or when non-finite.

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> ex = {"logits/log_z": np.array([4.9, 12.0, 31.0, 33.0, 35.0]),
...       "logits/steps": np.arange(5) * 50, "logits/vocab": np.array([128])}
>>> [f] = rule(Trace.build(["head"], steps=[0], extras=ex))
>>> f.kind, f.severity, f.remedies[0]
('output_logit_divergence', 'warning', 'z_loss')
"""

from __future__ import annotations

import math

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._attention import RECENT
from gradientflow.diagnosis.rules._common import fmt
from gradientflow.trace import Trace

WARN_ABS, WARN_LOGV = 20.0, 2.0
CRITICAL_ABS, CRITICAL_LOGV = 50.0, 4.0
MIN_DRIFT = 10.0
REMEDIES: dict[str, list[str]] = {
    "output_logit_divergence": ["z_loss", "lower_lr", "clip_gradients"]
}


def rule(trace: Trace) -> list[Finding]:
    """One finding when the output logits' log Z drifted far from 0 (none otherwise)."""
    log_z = trace.extras.get("logits/log_z")
    if log_z is None or np.asarray(log_z).size < 2:
        return []
    series = np.asarray(log_z, np.float64).reshape(-1)
    vocab = int(np.asarray(trace.extras.get("logits/vocab", [2])).reshape(-1)[0])
    log_v = math.log(max(vocab, 2))
    tail = series[-RECENT:]
    nonfinite = not np.isfinite(tail).all()
    latest = float(np.median(tail)) if not nonfinite else float("nan")
    drift = abs(latest - float(series[0])) if not nonfinite else float("inf")
    warn_at = max(WARN_ABS, WARN_LOGV * log_v)
    critical_at = max(CRITICAL_ABS, CRITICAL_LOGV * log_v)
    if not nonfinite and (abs(latest) < warn_at or drift < MIN_DRIFT):
        return []
    severity: Severity = "critical" if nonfinite or abs(latest) >= critical_at else "warning"
    steps = trace.extras.get("logits/steps", np.arange(series.size))
    state = (
        "became non-finite" if nonfinite else f"is {fmt(latest)} (it started at {fmt(series[0])})"
    )
    message = (
        f"Output logits diverge: the log-normaliser log Z of the output logits {state}, far "
        f"from 0 (logits near 0 give log {vocab} = {fmt(log_v)}). Cross-entropy does not pin "
        "log Z, so it drifts at high learning rates until the logits lose precision and the "
        "loss diverges (Chowdhery et al. 2022; Wortsman et al. 2023). An auxiliary z-loss "
        "1e-4 · log² Z holds it near 0; weight decay or a lower learning rate also help."
    )
    evidence = {
        "log_z": latest,
        "first_log_z": float(series[0]),
        "drift": drift,
        "warn_at": warn_at,
        "vocab": vocab,
        "step": int(np.asarray(steps).reshape(-1)[-1]),
    }
    return [
        Finding(
            "output_logit_divergence",
            severity,
            [],
            evidence,
            message,
            list(REMEDIES["output_logit_divergence"]),
        )
    ]
