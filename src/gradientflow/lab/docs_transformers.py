"""The transformer figures of docs/transformers.md and the README, generated from lab results.

:mod:`gradientflow.lab.docs` renders these blocks with the others; each cell is the mean and
the range (min–max) over the committed seeds of a number the experiments measure, so no figure
in those pages is typed by hand.

>>> s = {"x": {"a.0.1": {"mean": 2.0, "sd": 0.1, "min": 1.9, "max": 2.1, "n": 3},
...            "a.0.01": {"mean": 1.0, "sd": 0.0, "min": 1.0, "max": 1.0, "n": 3}}}
>>> print(lr_table(s, "x", [("loss", "a")]))
| lr | 0.01 | 0.1 |
|---|---|---|
| loss | 1 | 2 (1.9–2.1) |
"""

from __future__ import annotations

from typing import Any

Spread = dict[str, dict[str, dict[str, float]]]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def cell(stat: dict[str, float] | None) -> str:
    """``mean (min–max)``, or the value alone when every seed agrees; "—" when not measured."""
    if stat is None:
        return "—"
    if stat["n"] == 1 or stat["min"] == stat["max"]:
        return _fmt(stat["mean"])
    return f"{_fmt(stat['mean'])} ({_fmt(stat['min'])}–{_fmt(stat['max'])})"


def _lrs(spread: dict[str, dict[str, float]], prefixes: list[str]) -> list[str]:
    found = {k.split(".", 1)[1] for k in spread for p in prefixes if k.startswith(p + ".")}
    return sorted(found, key=float)


def lr_table(spread: Spread, name: str, rows: list[tuple[str, str]]) -> str:
    """One row per (label, measured prefix), one column per learning rate found under them."""
    s = spread.get(name, {})
    lrs = _lrs(s, [p for _, p in rows])
    out = ["| lr | " + " | ".join(lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for label, prefix in rows:
        out.append(f"| {label} | " + " | ".join(cell(s.get(f"{prefix}.{lr}")) for lr in lrs) + " |")
    return "\n".join(out)


def _seeds(payload: dict[str, Any] | None) -> str:
    n = len(payload["meta"].get("seeds", [0])) if payload else 0
    return f"mean (min–max) over {n} seeds"


def qk_block(quick: dict[str, Any] | None) -> str:
    if not quick:
        return "(no committed quick-lab results)"
    sp: Spread = quick["spread"]
    s = sp.get("qk-layernorm-lr", {})
    table = lr_table(
        sp,
        "qk-layernorm-lr",
        [
            ("final loss, plain", "final_loss_plain"),
            ("final loss, qk-layernorm", "final_loss_qk_layernorm"),
            ("largest attention logit, plain", "max_attention_logit_plain"),
            ("largest attention logit, qk-layernorm", "max_attention_logit_qk_layernorm"),
            ("lowest head entropy (nats), plain", "min_head_entropy_plain"),
            ("lowest head entropy (nats), qk-layernorm", "min_head_entropy_qk_layernorm"),
        ],
    )
    return (
        f"Quick lab, {_seeds(quick)}:\n\n{table}\n\n"
        f"Learning rates within 20% of the sweep's best loss: "
        f"{cell(s.get('lrs_within_margin.plain'))} without qk-layernorm, "
        f"{cell(s.get('lrs_within_margin.qk_layernorm'))} with it; LR sensitivity (mean excess "
        f"loss over the sweep) {cell(s.get('lr_sensitivity.plain'))} without, "
        f"{cell(s.get('lr_sensitivity.qk_layernorm'))} with."
    )


def post_ln_block(quick: dict[str, Any] | None) -> str:
    if not quick:
        return "(no committed quick-lab results)"
    s = quick["spread"].get("post-ln-warmup", {})
    rows = [
        ("post-LN, lr 1e-2, no warmup", "final_loss.post_high"),
        ("post-LN, lr 1e-2, 100-step warmup", "final_loss.post_high_warmup"),
        ("pre-LN, lr 1e-2, no warmup", "final_loss.pre_high"),
        ("post-LN, lr 3e-3, no warmup", "final_loss.post_low"),
        ("post-LN, lr 3e-3, 100-step warmup", "final_loss.post_low_warmup"),
    ]
    body = ["| run (6 blocks, Adam, 200 steps) | final loss |", "|---|---|"]
    body += [f"| {label} | {cell(s.get(key))} |" for label, key in rows]
    return (
        f"Quick lab, {_seeds(quick)}. At init (12 blocks) the last block's FFN gradient over the "
        f"median block's, median of 3 inits: post-LN {cell(s.get('growth_median_of_3.post'))}, "
        f"pre-LN {cell(s.get('growth_median_of_3.pre'))}.\n\n" + "\n".join(body)
    )


def z_loss_block(quick: dict[str, Any] | None, full: dict[str, Any] | None) -> str:
    payload = full if full and "z-loss" in full["spread"] else quick
    if not payload:
        return "(no committed lab results)"
    which = "Full lab" if payload is full else "Quick lab"
    s = payload["spread"].get("z-loss", {})
    table = lr_table(
        payload["spread"],
        "z-loss",
        [
            ("final loss, plain", "final_loss_plain"),
            ("final loss, z-loss", "final_loss_z_loss"),
            ("log Z end, plain", "log_z_end_plain"),
            ("log Z moves, plain", "log_z_excursion_plain"),
            ("log Z end, z-loss", "log_z_end_z_loss"),
            ("late \\|log Z\\|, z-loss", "log_z_late_max_abs_z_loss"),
        ],
    )
    return f"{which}, {_seeds(payload)}; log Z starts at {cell(s.get('log_z_start'))}:\n\n{table}"


def readme_block(quick: dict[str, Any] | None) -> str:
    """The README's transformer sentences, with the quick lab's means and ranges."""
    if not quick:
        return "(no committed quick-lab results)"
    sp: Spread = quick["spread"]
    qk, pl, zl = (sp.get(n, {}) for n in ("qk-layernorm-lr", "post-ln-warmup", "z-loss"))
    n = len(quick["meta"].get("seeds", [0]))
    return (
        f"Measured by the quick lab (mean, and range over {n} seeds): on a tiny character LM "
        f"trained with AdamW at lr 0.1, the largest attention logit reaches "
        f"{cell(qk.get('max_attention_logit_plain.0.1'))} and the lowest head entropy falls to "
        f"{cell(qk.get('min_head_entropy_plain.0.1'))} nats (loss "
        f"{cell(qk.get('final_loss_plain.0.1'))}); with qk-layernorm the logit stays at "
        f"{cell(qk.get('max_attention_logit_qk_layernorm.0.1'))} (loss "
        f"{cell(qk.get('final_loss_qk_layernorm.0.1'))}). At init a 12-block post-LN stack's "
        f"last FFN gradient is {cell(pl.get('growth_median_of_3.post'))}× its median block's, "
        f"a pre-LN stack's {cell(pl.get('growth_median_of_3.pre'))}×; a 100-step warmup takes "
        f"post-LN at lr 1e-2 from loss {cell(pl.get('final_loss.post_high'))} to "
        f"{cell(pl.get('final_loss.post_high_warmup'))}. Cross-entropy does not hold the output "
        f"log Z: without z-loss it stays near log V ≈ {cell(zl.get('log_z_start'))} and at lr "
        f"0.5 moves by {cell(zl.get('log_z_excursion_plain.0.5'))}; with z-loss (coefficient "
        f"0.1 at this 200-step scale) its largest |log Z| over the second half is "
        f"{cell(zl.get('log_z_late_max_abs_z_loss.0.5'))}, at a loss of "
        f"{cell(zl.get('final_loss_z_loss.0.5'))} (plain: {cell(zl.get('final_loss_plain.0.5'))})."
    )


def blocks(quick: dict[str, Any] | None, full: dict[str, Any] | None) -> dict[str, str]:
    """The transformer blocks, by key."""
    return {
        "tf-qk": qk_block(quick),
        "tf-post-ln": post_ln_block(quick),
        "tf-z-loss": z_loss_block(quick, full),
        "readme-tf": readme_block(quick),
    }
