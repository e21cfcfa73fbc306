"""The lab's numbers in the docs are generated from results files, never typed in.

``python -m gradientflow.lab.docs --quick lab-q/results.json --full lab-f/results.json``
copies the two results files (slimmed: no figure paths) to ``docs/lab-results/`` and rewrites
every block between ``<!-- lab:KEY:begin -->`` and ``<!-- lab:KEY:end -->`` in docs/lab.md,
docs/transformers.md and README.md from them. Without arguments it only re-renders from the
committed copies; ``--check`` exits 1 when a file would change (the test suite does the same).
``--quick`` and ``--full`` may be given several times: the runs are merged (a later file's run
of an experiment and seed replaces an earlier one's), and ``--note`` says in the docs how they
were made.

>>> block("x", "body")
'<!-- lab:x:begin -->\\nbody\\n<!-- lab:x:end -->'
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from gradientflow.lab import docs_transformers, experiments
from gradientflow.lab.record import ExperimentResult
from gradientflow.lab.reporting import spread

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "docs" / "lab-results"
TARGETS = (ROOT / "docs" / "lab.md", ROOT / "docs" / "transformers.md", ROOT / "README.md")

#: per experiment: the measured numbers the docs show (dotted paths into ``measured``; a path
#: ending in "." takes every number below it)
DOC_KEYS: dict[str, list[str]] = {
    "depth-sigmoid": ["test_acc.", "grad_ratio_first_last_step0.", "best_lr."],
    "glorot-init": [
        "standard_var_ratio_l1_l5",
        "normalized_var_ratio_l1_l5",
        "standard_weight_grad_spread_l2_l5",
    ],
    "batchnorm": [
        "best_lr.",
        "test_acc_plain",
        "test_acc_bn",
        "input_shift_plain",
        "input_shift_bn",
        "bn_net_linear_output_shift",
        "deep_grad_ratio_plain",
        "deep_grad_ratio_bn",
    ],
    "residual": [
        "train_loss_plain.",
        "train_loss_residual.",
        "best_lr_plain.",
        "best_lr_residual.",
        "plain_deepest_grad_ratio_step0",
        "plain_deepest_grad_ratio_median",
    ],
    "selu-fixed-point": [
        "selu_max_abs_mean_past_10",
        "selu_var_layer_64",
        "relu_var_layer_64",
        "selu_default_init_var_layer_64",
    ],
    "dying-relu": [
        "all_negative_worst_layer_init.",
        "all_negative_worst_layer_end.",
        "monitor_in_dead_frac_max.",
        "test_acc.",
    ],
    "pretraining": [
        "test_acc_random",
        "test_acc_pretrained",
        "grad_ratio_step0_random",
        "grad_ratio_step0_pretrained",
        "best_lr.",
    ],
    "lstm-vs-rnn": ["test_mse.", "best_lr.", "gain_through_time_t_quarter_end."],
    "mean-field": [
        "max_abs_relative_error",
        "sigmoid_default_predicted",
        "sigmoid_default_measured",
    ],
    "mnist1d-baselines": ["test_acc."],
    "hardware": ["steps_per_second.", "parity_gap.", "negative_control_gap"],
    "trainability": ["agreement", "majority_guess_agreement", "critical_sigma_w2"],
    "qk-layernorm-lr": [
        "final_loss_plain.",
        "final_loss_qk_layernorm.",
        "max_attention_logit_plain.",
        "max_attention_logit_qk_layernorm.",
        "lrs_within_margin.",
        "lr_sensitivity.",
    ],
    "post-ln-warmup": ["growth_median_of_3.", "final_loss."],
    "z-loss": [
        "final_loss_plain.",
        "final_loss_z_loss.",
        "log_z_start",
        "log_z_excursion_plain.",
        "log_z_end_plain.",
        "log_z_end_z_loss.",
        "log_z_late_max_abs_z_loss.",
    ],
}

#: experiments whose criterion the committed quick run misses on some (fewer than half) of its
#: seeds, with what the docs say about it: issue 11 asks each experiment to pass on every seed
#: of 3 *or state its spread honestly*; a criterion is never loosened after the fact to pass.
#: tests/lab/test_docs.py fails if a listed experiment passes every seed (stale) or fails on
#: half or more, and if an unlisted one fails on any seed.
STATED_SPREAD: dict[str, str] = {
    "qk-layernorm-lr": "with qk-layernorm the loss at lr 0.1 sits at the 20% margin of the "
    "sweep's best, inside it on some seeds and just outside on others (table below); the plain "
    "model's logit growth, its loss beyond the margin and the attention findings hold on every "
    "seed, and the mean excess loss over the sweep (lr_sensitivity) is lower with qk-layernorm",
}

#: experiments whose criterion the committed *full* lab (docs/lab-results/full.json) misses, on
#: some or all of its seeds, with what the docs say about it. Nothing is loosened to pass:
#: tests/lab/test_docs.py fails unless each of these misses in the committed full results and
#: every other miss there is one STATED_SPREAD allows (on fewer than half the seeds); the
#: opt-in full-lab test accepts a miss only from these two lists.
FULL_MISSES: dict[str, str] = {}

#: README's headline per experiment: (measured path, what it is, the literature)
HEADLINES: dict[str, tuple[str, str, str]] = {
    "depth-sigmoid": (
        "test_acc.relu + He",
        "ReLU+He test accuracy, 20 layers, 10 epochs",
        "sigmoid ≈ chance, ReLU/SELU/tanh train (SCIENCE.md)",
    ),
    "glorot-init": (
        "standard_var_ratio_l1_l5",
        "Var[∂C/∂s] layer 1/5, standard init",
        "shrinks toward the input (Glorot & Bengio 2010)",
    ),
    "batchnorm": (
        "input_shift_bn",
        "sigmoid-input shift with BN (eval mode)",
        "stable inputs with BN (Ioffe & Szegedy 2015)",
    ),
    "residual": (
        "train_loss_plain.26",
        "plain 26-layer training loss",
        "degradation without shortcuts (He et al. 2016)",
    ),
    "selu-fixed-point": (
        "selu_var_layer_64",
        "SELU variance at layer 64",
        "fixed point 1 (Klambauer et al. 2017)",
    ),
    "dying-relu": (
        "all_negative_worst_layer_end.relu",
        "ReLU units still all-negative",
        "dead ReLUs (seed article; Maas et al. 2013)",
    ),
    "pretraining": (
        "test_acc_pretrained",
        "pretrained 10-layer sigmoid, test accuracy",
        "Hinton et al. 2006; Bengio et al. 2007",
    ),
    "lstm-vs-rnn": (
        "test_mse.lstm T=50",
        "LSTM test MSE, adding problem T=50 (RNN: ≈ 1/6)",
        "LSTM learns, RNN stays at 1/6 (Hochreiter & Schmidhuber 1997)",
    ),
    "mean-field": (
        "max_abs_relative_error",
        "χ₁ measured vs predicted, worst error",
        "Poole et al. 2016; Schoenholz et al. 2017",
    ),
    "mnist1d-baselines": (
        "test_acc.cnn",
        "CNN test accuracy after 600 of the paper's 6000 steps",
        "94% (Greydanus 2020)",
    ),
    "hardware": (
        "parity_gap.cpu bfloat16",
        "bf16 vs fp32 per-step loss gap",
        "same training, faster hardware (seed article)",
    ),
    "trainability": (
        "agreement",
        "preflight's 6ξ vs training, cells agreeing",
        "trainable iff depth ≲ 6ξ (Schoenholz et al. 2017)",
    ),
    "qk-layernorm-lr": (
        "max_attention_logit_plain.0.1",
        "largest attention logit at lr 0.1, no qk-layernorm",
        "logits grow, loss degrades; qk-layernorm prevents it (Wortsman et al. 2023)",
    ),
    "post-ln-warmup": (
        "growth_median_of_3.post",
        "post-LN FFN gradient at init, last block / median block",
        "grows toward the output; post-LN needs warmup (Xiong et al. 2020)",
    ),
    "z-loss": (
        "log_z_late_max_abs_z_loss.0.5",
        "z-loss at lr 0.5, largest absolute log Z over the second half (plain: ≈ log V = 4.85)",
        "z-loss holds log Z near 0 (Chowdhery et al. 2022; Wortsman et al. 2023)",
    ),
}


def block(key: str, body: str) -> str:
    """One generated block with its markers."""
    return f"<!-- lab:{key}:begin -->\n{body}\n<!-- lab:{key}:end -->"


def load(mode: str) -> dict[str, Any] | None:
    """The committed results of ``mode`` ("quick" or "full"), or None if there are none."""
    path = RESULTS / f"{mode}.json"
    if not path.exists():
        return None
    payload: dict[str, Any] = json.loads(path.read_text())
    runs = [ExperimentResult.from_dict(r) for r in payload["results"]]
    payload["spread"] = spread(runs)  # recomputed: the docs follow this code's statistics
    return payload


def slim(payload: dict[str, Any]) -> dict[str, Any]:
    """A results payload without what varies by where it ran (figure paths)."""
    out = dict(payload)
    out["results"] = [{k: v for k, v in r.items() if k != "figures"} for r in payload["results"]]
    return out


def merge(payloads: list[dict[str, Any]], note: str | None = None) -> dict[str, Any]:
    """Several lab runs' results as one: runs keyed by (experiment, seed), a later payload's
    replacing an earlier one's; meta's seeds are the union, its wall time the longest run's.

    >>> a = {"meta": {"quick": True, "jobs": 2, "wall_seconds": 5.0, "seeds": [0]},
    ...      "results": [{"name": "x", "seed": 0, "passed": True}]}
    >>> b = {"meta": {"quick": True, "jobs": 1, "wall_seconds": 9.0, "seeds": [0, 1]},
    ...      "results": [{"name": "y", "seed": 0, "passed": False}, {"name": "y", "seed": 1}]}
    >>> m = merge([a, b], note="two runs")
    >>> [(r["name"], r["seed"]) for r in m["results"]], m["meta"]["seeds"], m["meta"]["passed"]
    ([('x', 0), ('y', 0), ('y', 1)], [0, 1], False)
    >>> merge([a, {**b, "meta": {**b["meta"], "quick": False}}])
    Traceback (most recent call last):
    ...
    ValueError: lab docs: cannot merge a quick lab's results with a full lab's
    """
    if len({bool(p["meta"].get("quick")) for p in payloads}) > 1:
        raise ValueError("lab docs: cannot merge a quick lab's results with a full lab's")
    if len(payloads) == 1 and note is None:
        return payloads[0]
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for p in payloads:
        for r in p["results"]:
            runs[(r["name"], int(r.get("seed", 0)))] = r
    order = {n: i for i, n in enumerate(experiments.names())}
    results = sorted(runs.values(), key=lambda r: (order.get(r["name"], len(order)), r["seed"]))
    metas = [p["meta"] for p in payloads]
    meta = {
        **metas[0],
        "wall_seconds": max(m.get("wall_seconds", 0.0) for m in metas),
        "seeds": sorted({s for m in metas for s in m.get("seeds", [0])}),
        "passed": all(bool(r.get("passed")) for r in results),
        "n": len({r["name"] for r in results}),
    }
    if note:
        meta["note"] = note
    return {"meta": meta, "results": results}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _stat(spread: dict[str, Any], key: str) -> str:
    s = spread.get(key)
    if s is None:
        return "—"
    if s["n"] == 1:
        return _fmt(s["mean"])
    return f"{_fmt(s['mean'])} ± {_fmt(s['sd'])} ({_fmt(s['min'])}–{_fmt(s['max'])})"


def _keys(name: str, spread: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for want in DOC_KEYS.get(name, []):
        keys += [k for k in spread if (k.startswith(want) if want.endswith(".") else k == want)]
    return keys


def _runs(payload: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    return [r for r in payload["results"] if r["name"] == name] if payload else []


def _verdict(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "not run"
    ok = sum(bool(r["passed"]) for r in runs)
    fails = sum(bool(r.get("negative_control", {}).get("fails")) for r in runs)
    word = "pass" if ok == len(runs) else "FAIL"
    return f"{word} {ok}/{len(runs)}; control fails {fails}/{len(runs)}"


def _esc(text: str) -> str:
    return text.replace("|", "\\|")


def summary(quick: dict[str, Any] | None, full: dict[str, Any] | None) -> str:
    """Claim, criterion (full lab's), negative control and verdicts, one row per experiment."""
    rows = [
        "| experiment | claim | criterion (full lab where run) | negative control | quick | full |",
        "|---|---|---|---|---|---|",
    ]
    for name in experiments.names():
        q, f = _runs(quick, name), _runs(full, name)
        first = (f or q or [{}])[0]
        what = first.get("negative_control", {}).get("what", "—")
        rows.append(
            f"| {name} | {_esc(experiments.describe(name))} | {_esc(first.get('criterion', '—'))} "
            f"| {_esc(what)} | {_verdict(q)} | {_verdict(f)} |"
        )
    notes = [
        f"*{name}* misses its criterion on some seeds: {why}."
        for name, why in STATED_SPREAD.items()
    ]
    if full:
        notes += [
            f"*{name}* misses its criterion in the full lab: {why}."
            for name, why in FULL_MISSES.items()
        ]
    return "\n".join(rows + (["", *notes] if notes else []))


def numbers(name: str, quick: dict[str, Any] | None, full: dict[str, Any] | None) -> str:
    """Mean ± sd (min–max) over the seeds of the experiment's headline numbers."""
    qs = quick["spread"].get(name, {}) if quick else {}
    fs = full["spread"].get(name, {}) if full else {}
    keys = list(dict.fromkeys(_keys(name, fs) + _keys(name, qs)))
    rows = ["| measured | quick | full |", "|---|---|---|"]
    rows += [f"| {_esc(k)} | {_stat(qs, k)} | {_stat(fs, k)} |" for k in keys]
    return "\n".join(rows)


def times(quick: dict[str, Any] | None, full: dict[str, Any] | None) -> str:
    rows = ["| run | seeds | jobs | wall |", "|---|---|---|---|"]
    notes: list[str] = []
    for label, p in (("`gradientflow lab --quick`", quick), ("`gradientflow lab`", full)):
        if p:
            m = p["meta"]
            seeds = len(m.get("seeds", [0]))
            rows.append(f"| {label} | {seeds} | {m['jobs']} | {m['wall_seconds']} s |")
            if m.get("note"):
                notes.append(f"{label}: {m['note']}.")
    return "\n".join(rows + (["", *notes] if notes else []))


def readme_table(quick: dict[str, Any] | None) -> str:
    """The README's table: one headline number per experiment from the quick lab's seeds."""
    n = len(quick["meta"].get("seeds", [0])) if quick else 0
    rows = [
        f"| experiment | ours (quick lab, mean ± sd (min–max) over {n} seeds) | the literature |",
        "|---|---|---|",
    ]
    for name, (key, what, paper) in HEADLINES.items():
        stat = _stat(quick["spread"].get(name, {}), key) if quick else "—"
        rows.append(f"| {name} | {what}: {stat} | {paper} |")
    return "\n".join(rows)


def blocks(quick: dict[str, Any] | None, full: dict[str, Any] | None) -> dict[str, str]:
    """Every generated block's body, by key."""
    out = {
        "summary": summary(quick, full),
        "times": times(quick, full),
        "readme": readme_table(quick),
    }
    for name in experiments.names():
        out[name] = numbers(name, quick, full)
    out.update(docs_transformers.blocks(quick, full))
    return out


def render(text: str, bodies: dict[str, str]) -> str:
    """``text`` with every known block's body replaced (unknown keys are left alone)."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        return block(key, bodies[key]) if key in bodies else m.group(0)

    return re.sub(r"<!-- lab:([\w-]+):begin -->.*?<!-- lab:\1:end -->", sub, text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gradientflow.lab.docs", description=__doc__)
    p.add_argument("--quick", action="append", help="a quick lab's results.json to commit")
    p.add_argument("--full", action="append", help="a full lab's results.json to commit")
    p.add_argument("--note", help="how the runs were made (shown under the run-times table)")
    p.add_argument("--check", action="store_true", help="exit 1 if a doc would change")
    args = p.parse_args(argv)
    for mode in ("quick", "full"):
        sources = getattr(args, mode)
        if sources:
            RESULTS.mkdir(parents=True, exist_ok=True)
            loaded = [json.loads(Path(src).read_text()) for src in sources]
            try:
                payload = slim(merge(loaded, args.note))
            except ValueError as err:
                print(err, file=sys.stderr)
                return 2
            (RESULTS / f"{mode}.json").write_text(
                json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
            )
    bodies = blocks(load("quick"), load("full"))
    stale = []
    for target in TARGETS:
        old = target.read_text()
        new = render(old, bodies)
        if new != old:
            stale.append(str(target))
            if not args.check:
                target.write_text(new)
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
