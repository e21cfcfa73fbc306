"""lstm-vs-rnn: on the adding problem a tanh RNN cannot carry the error back over many
steps; an LSTM can.

Source: Hochreiter & Schmidhuber 1997, "Long short-term memory", §3.1 and experiment 4 (the
adding problem; here Arjovsky et al. 2016's variant: values U[0, 1], one marker in each half,
target = sum of the two marked values, predicting 1 gives MSE 1/6 ≈ 0.167); Pascanu, Mikolov &
Bengio 2013 (‖∂h_t/∂h_k‖ ≤ (λ₁γ)^(t−k)). SCIENCE.md: LSTM (128 hidden, Adam 1e-3, clip 1) beats
the baseline up to T = 400; a tanh RNN never does at T ≥ 200.

Scaled to a CPU: 32 hidden units, Adam lr 0.01, gradient clipping at norm 1, batches of 64 fresh
sequences (:func:`gradientflow.lab.tasks.fresh_batches`), evaluated on 1000 held-out sequences.
Every run is watched with the recurrent probes (:mod:`gradientflow.probes.recurrent`); we read
the gain through time ‖u·∂h_T/∂h_t‖ at t = T/4 (where the first marker typically sits) from the
Trace at the last sampled step.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradientflow.lab import models, tasks
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, sig

CLAIM = (
    "Through time the chain rule multiplies W_recᵀ·diag(φ') at every step: a tanh RNN's "
    "gradient vanishes over long gaps, an LSTM's cell carries it, so only the LSTM learns."
)
SOURCE = "Hochreiter & Schmidhuber 1997 (§3.1, exp. 4); Pascanu et al. 2013; Arjovsky et al. 2016"
HIDDEN, LR, CLIP, BATCH = 32, 0.01, 1.0, 64
BASELINE = tasks.ADDING_BASELINE_MSE


def _train(cell: str, seq_len: int, steps: int) -> dict[str, Any]:
    import gradientflow
    from gradientflow.probes.recurrent import recurrent_probes
    from gradientflow.schedule import Schedule

    net = models.SequenceRegressor(cell, n_in=2, hidden=HIDDEN, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x_eval, y_eval = tasks.eval_set("adding", 1000, seq_len)
    curve: list[float] = []
    mon = gradientflow.watch(
        net,
        opt,
        schedule=Schedule(full_every=max(1, steps // 4)),
        probes=tuple(recurrent_probes(net, every=1)),
    )
    with mon:
        stream = tasks.fresh_batches("adding", BATCH, seq_len, seed=0, n=steps)
        for step, (x, y) in enumerate(stream):
            opt.zero_grad(set_to_none=True)
            loss = (net(x) - y).pow(2).mean()
            loss.backward()
            mon.log(loss=loss)
            torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
            opt.step()
            if (step + 1) % max(1, steps // 20) == 0:
                curve.append(_mse(net, x_eval, y_eval))
    gain = mon.trace.extras["bptt/rnn/gain"]  # (samples, T), last column = 1
    return {
        "mse": _mse(net, x_eval, y_eval),
        "curve": curve,
        "gain_quarter": float(np.nanmedian(gain[-1:, seq_len // 4])),
        "gain_quarter_init": float(np.nanmedian(gain[:1, seq_len // 4])),
    }


@torch.no_grad()
def _mse(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((net(x) - y).pow(2).mean())


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """RNN vs LSTM on the adding problem at one (quick) or two sequence lengths."""
    lengths, steps = ([50], 1000) if quick else ([50, 100], 2000)
    runs = {f"{cell} T={t}": _train(cell, t, steps) for t in lengths for cell in ("rnn", "lstm")}
    checks: list[dict[str, Any]] = []
    for t in lengths:
        lstm, rnn = runs[f"lstm T={t}"], runs[f"rnn T={t}"]
        check(checks, f"T={t}: LSTM test MSE < 0.3 × baseline 1/6", lstm["mse"] < 0.3 * BASELINE)
        check(
            checks,
            f"T={t}: tanh RNN test MSE > 0.6 × baseline (does not learn)",
            rnn["mse"] > 0.6 * BASELINE,
        )
        check(
            checks,
            f"T={t}: LSTM gain through time at t=T/4 ≥ 100× the RNN's",
            lstm["gain_quarter"] >= 100 * rnn["gain_quarter"],
        )
    figures = save_figure(out_dir, "lstm-vs-rnn", lambda ax: _plot(ax, runs, steps))
    return ExperimentResult(
        name="lstm-vs-rnn",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "task": "adding problem (Arjovsky variant)",
            "lengths": lengths,
            "steps": steps,
            "hidden": HIDDEN,
            "optimizer": f"Adam lr {LR}, clip {CLIP}, batch {BATCH}",
            "eval": "1000 held-out sequences",
            "lstm_forget_bias": 1.0,
        },
        measured={
            "test_mse": {k: sig(v["mse"]) for k, v in runs.items()},
            "baseline_mse": sig(BASELINE),
            "gain_through_time_t_quarter_end": {
                k: sig(v["gain_quarter"], 2) for k, v in runs.items()
            },
            "gain_through_time_t_quarter_init": {
                k: sig(v["gain_quarter_init"], 2) for k, v in runs.items()
            },
        },
        paper={
            "baseline_mse": 0.167,
            "lstm": "beats the baseline up to T = 400 (128 hidden)",
            "tanh_rnn": "never beats it at T ≥ 200",
        },
        criterion="at every T: LSTM MSE < 0.3 × 1/6, tanh RNN MSE > 0.6 × 1/6, and the LSTM's "
        "gain through time at T/4 ≥ 100× the RNN's",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, runs: dict[str, dict[str, Any]], steps: int) -> None:
    for label, r in runs.items():
        xs = np.linspace(steps / len(r["curve"]), steps, len(r["curve"]))
        ax.plot(xs, r["curve"], label=label)
    ax.axhline(BASELINE, color="gray", ls="--", label="predict 1 (1/6)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("test MSE")
    ax.set_title("adding problem")
    ax.legend()
