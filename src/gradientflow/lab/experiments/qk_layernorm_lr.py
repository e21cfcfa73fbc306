"""qk-layernorm-lr: attention logit growth at high learning rates, and qk-layernorm against it.

Source: Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", Fig. 1 and §3.1: without qk-layernorm the final loss of small transformers rises
steeply once the learning rate passes a threshold, the attention logits grow by orders of
magnitude and the attention entropy collapses (Dehghani et al. 2023; Zhai et al. 2023); with
qk-layernorm the loss stays near its best over a wider range of learning rates ("LR
sensitivity" drops).

We train a tiny pre-LN causal transformer LM (:mod:`gradientflow.lab.transformer_models`:
2 blocks, d_model 32, 2 heads, 32 characters of Python standard-library source per sequence)
with AdamW (no weight decay) over a learning-rate sweep spanning more than two decades, with
and without qk-layernorm, same seed and batches, watched with the attention probe. Each arm is
held to the qk-layernorm criterion (:func:`stable_at_high_lr`: at lr 0.1 the loss stays within
20% of the sweep's best and the largest attention logit below 100× its lr-1e-3 value). The
negative control: the plain model must fail it.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.transformer_models import TinyLM, train_lm
from gradientflow.remedies.qk_layernorm import qk_layernorm

CLAIM = (
    "Without qk-layernorm a small transformer's attention logits grow and its loss degrades at "
    "high learning rates; with qk-layernorm the loss stays near its best over a wider LR range."
)
SOURCE = "Wortsman et al. 2023 (Fig. 1, §3.1); Dehghani et al. 2023; Zhai et al. 2023"
#: "near its best": final loss within 20% of the best final loss of the sweep (both arms)
MARGIN = 0.2
ATTN = ("attention_logit_growth", "attention_entropy_collapse")
HIGH_LR, LOW_LR = 1e-1, 1e-3
NEGATIVE_CONTROL = (
    "the plain model under the qk-layernorm criterion (at lr 0.1: loss within 20% of the best, "
    "max attention logit < 100 × lr 1e-3's)"
)


def _arm(lrs: list[float], qk: bool, steps: int, seed: int) -> list[dict[str, Any]]:
    out = []
    for lr in lrs:
        model = TinyLM(seed=seed)
        r = train_lm(qk_layernorm(model) if qk else model, lr=lr, steps=steps, seed=seed)
        out.append(
            {
                "lr": lr,
                "loss": r.final_loss,
                "max_logit": r.extra_max("max_logit"),
                "min_entropy": r.extra_min("entropy_mean"),
                "findings": r.findings,
            }
        )
    return out


def stable_at_high_lr(
    arm: list[dict[str, Any]], lrs: list[float], best: float
) -> list[dict[str, Any]]:
    """The qk-layernorm criterion on one arm of the sweep: at lr 0.1 the final loss is within
    the margin of the sweep's best, and the largest attention logit grew < 100× from lr 1e-3's."""
    hi, lo = arm[lrs.index(HIGH_LR)], arm[lrs.index(LOW_LR)]
    checks: list[dict[str, Any]] = []
    check(
        checks,
        f"loss at lr 0.1 ≤ {1 + MARGIN:g} × the sweep's best",
        hi["loss"] <= (1 + MARGIN) * best,
    )
    check(
        checks,
        "max attention logit at lr 0.1 < 100 × at lr 1e-3",
        hi["max_logit"] < 100 * lo["max_logit"],
    )
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """LR sweep with and without qk-layernorm; losses, max attention logits, findings."""
    lrs = [1e-3, 1e-2, 1e-1, 3e-1] if quick else [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    steps = 200 if quick else 400
    plain, normed = _arm(lrs, False, steps, seed), _arm(lrs, True, steps, seed)
    best = min(r["loss"] for r in plain + normed)
    ok_plain = sum(r["loss"] <= (1 + MARGIN) * best for r in plain)
    ok_normed = sum(r["loss"] <= (1 + MARGIN) * best for r in normed)
    sens = {
        name: sum(min(r["loss"], 4.85) - best for r in arm) / len(arm)
        for name, arm in (("plain", plain), ("qk_layernorm", normed))
    }
    hi = lrs.index(HIGH_LR)
    checks = [
        {**c, "check": "qk-layernorm: " + c["check"]} for c in stable_at_high_lr(normed, lrs, best)
    ]
    check(
        checks,
        "plain: max attention logit at lr 0.1 ≥ 100 × at lr 1e-3",
        plain[hi]["max_logit"] >= 100 * plain[lrs.index(LOW_LR)]["max_logit"],
    )
    check(
        checks,
        f"plain: loss at lr 0.1 > {1 + MARGIN:g} × the sweep's best",
        plain[hi]["loss"] > (1 + MARGIN) * best,
    )
    check(
        checks,
        f"more LRs within {MARGIN:.0%} of the best loss with qk-layernorm than without",
        ok_normed > ok_plain,
    )
    check(
        checks,
        "diagnose(): attention kinds raised for plain at lr 0.1, none with qk-layernorm",
        all(k in plain[hi]["findings"] for k in ATTN)
        and not any(k in normed[hi]["findings"] for k in ATTN),
    )
    lo = lrs.index(1e-2)
    check(
        checks,
        "lr 1e-2: both arms' losses within 5% and no attention finding",
        abs(plain[lo]["loss"] - normed[lo]["loss"]) <= 0.05 * best
        and not any(k in plain[lo]["findings"] + normed[lo]["findings"] for k in ATTN),
    )
    negative = control(NEGATIVE_CONTROL, stable_at_high_lr(plain, lrs, best))
    figures = save_figure(out_dir, "qk_layernorm_lr", lambda ax: _plot(ax, plain, normed))
    return ExperimentResult(
        name="qk-layernorm-lr",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "model": "TinyLM pre-LN, 2 blocks, d_model 32, 2 heads, seq 32, vocab 128",
            "optimizer": "AdamW, no weight decay, batch 16",
            "steps": steps,
            "lrs": lrs,
            "seed": seed,
        },
        measured={
            "final_loss_plain": {f"{r['lr']:g}": sig(r["loss"]) for r in plain},
            "final_loss_qk_layernorm": {f"{r['lr']:g}": sig(r["loss"]) for r in normed},
            "max_attention_logit_plain": {f"{r['lr']:g}": sig(r["max_logit"]) for r in plain},
            "max_attention_logit_qk_layernorm": {
                f"{r['lr']:g}": sig(r["max_logit"]) for r in normed
            },
            "min_head_entropy_plain": {f"{r['lr']:g}": sig(r["min_entropy"]) for r in plain},
            "min_head_entropy_qk_layernorm": {
                f"{r['lr']:g}": sig(r["min_entropy"]) for r in normed
            },
            "lrs_within_margin": {"plain": ok_plain, "qk_layernorm": ok_normed},
            "lr_sensitivity": {k: sig(v) for k, v in sens.items()},
            "findings_plain": [r["findings"] for r in plain],
            "findings_qk_layernorm": [r["findings"] for r in normed],
        },
        criterion="qk-layernorm at lr 0.1: loss within 20% of the sweep's best and max "
        "attention logit < 100× lr 1e-3's; plain at lr 0.1: max logit ≥ 100× lr 1e-3's; "
        "qk-layernorm keeps more LRs within 20% of the best; attention findings only for plain "
        "at lr 0.1; at lr 1e-2: arms agree within 5%, no finding",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        figures=figures,
        quick=quick,
        seed=seed,
    )


def _plot(ax: Any, plain: list[dict[str, Any]], normed: list[dict[str, Any]]) -> None:
    ax.semilogx([r["lr"] for r in plain], [r["loss"] for r in plain], "o-", label="plain")
    ax.semilogx([r["lr"] for r in normed], [r["loss"] for r in normed], "s-", label="qk-layernorm")
    ax.set_xlabel("learning rate (AdamW)")
    ax.set_ylabel("final training loss")
    ax.set_title("LR sensitivity of a tiny transformer LM")
    ax.legend()
