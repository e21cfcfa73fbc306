"""batchnorm: batch normalization keeps sigmoid inputs stable, trains faster, and keeps
gradients flowing through depth.

Source: Ioffe & Szegedy 2015, "Batch normalization", §4.1 and Fig. 1: MNIST, 3 hidden layers
of 100 sigmoid units; with BN the net trains faster and the distribution of a sigmoid's input
stays stable over training, while without BN its mean and spread drift. SCIENCE.md measured on
the 20-layer sigmoid digits MLP: first/last gradient ratio 1e-18 without BN, 0.68 with BN.

Part 1 (Ioffe's Fig. 1 on MNIST-1D): the 3×100 sigmoid MLP with PyTorch's default init, plain
vs with BN (made by :func:`gradientflow.remedies.batchnorm.add_batchnorm`), same SGD, same
batches, each net at its own best lr of the same sweep. We track each unit of the last hidden
layer's sigmoid input on fixed samples in *eval mode* (BN normalizes with its running
statistics, as at inference: in train mode its output has mean β and spread γ by construction,
which would prove nothing) every 25 steps, and report its *shift*: (max - min over training of
the unit's mean) / (its average spread). The Linear output feeding BN is tracked too: it drifts,
BN takes the drift out. Negative control: the plain net must fail the stability criterion.
Part 2: the 20-layer sigmoid MLP on digits, gradient ratio first/last layer at step 0, read
from :func:`gradientflow.watch`'s Trace.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import fit, step0_ratio

CLAIM = (
    "Batch normalization keeps each sigmoid's input distribution fixed during training, so "
    "the net trains faster, and keeps the gradient's scale through many layers."
)
SOURCE = "Ioffe & Szegedy 2015, Batch Normalization (§4.1, Fig. 1: 3×100 sigmoid MLP on MNIST)"
EVERY, WARM = 25, 50
LRS = (0.01, 0.1, 1.0)
SHIFT_MAX = 1.0
NEGATIVE_CONTROL = f"the plain net under the BN net's criterion (sigmoid-input shift ≤ {SHIFT_MAX})"


def _with_bn(model: nn.Sequential) -> nn.Sequential:
    from gradientflow.remedies.batchnorm import add_batchnorm

    new = add_batchnorm(model)
    assert isinstance(new, nn.Sequential)
    return new


@torch.no_grad()
def _inputs(net: nn.Sequential, where: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last sigmoid's input on ``x`` in eval mode (BN uses its running statistics, as at
    inference, so its output is *not* normalized by construction) and the Linear output feeding
    it; the net's mode is restored."""
    was = net.training
    net.eval()
    try:
        pre = net[:where](x)
        linear = [i for i, m in enumerate(net) if i < where and isinstance(m, nn.Linear)][-1]
        return pre, net[: linear + 1](x)
    finally:
        net.train(was)


def _shift(means: list[torch.Tensor], spreads: list[torch.Tensor]) -> float:
    """(max - min over training of each unit's mean) / its average spread, mean over units."""
    mu, sd = torch.stack(means), torch.stack(spreads)
    return float(((mu.max(0).values - mu.min(0).values) / sd.mean(0)).mean())


def _train_tracking(
    net: nn.Sequential, data: datasets.Dataset, epochs: int, lr: float, seed: int
) -> dict[str, Any]:
    """Train; from step WARM on, every EVERY steps record the last sigmoid's input (eval mode)
    and the Linear output feeding it, on 500 fixed training samples, and the test accuracy."""
    where = [i for i, m in enumerate(net) if isinstance(m, nn.Sigmoid)][-1]
    probe_x = data.x_train[:500]
    rec: dict[str, list[torch.Tensor]] = {"mu": [], "sd": [], "lin_mu": [], "lin_sd": []}
    accs: list[float] = []

    def on_step(step: int, model: nn.Module) -> None:
        if step % EVERY:
            return
        accs.append(datasets.accuracy(model, data.x_test, data.y_test))
        if step < WARM:  # BN's running statistics start at (0, 1): let them settle first
            return
        pre, lin = _inputs(net, where, probe_x)
        rec["mu"].append(pre.mean(0))
        rec["sd"].append(pre.std(0))
        rec["lin_mu"].append(lin.mean(0))
        rec["lin_sd"].append(lin.std(0))

    result = fit(
        net,
        data,
        epochs=epochs,
        lr=lr,
        momentum=0.9,
        batch_size=64,
        seed=seed,
        drop_last=True,
        on_step=on_step,
    )
    return {
        "test_acc": result.test_acc,
        "train_loss": result.train_loss,
        "shift": _shift(rec["mu"], rec["sd"]),
        "linear_shift": _shift(rec["lin_mu"], rec["lin_sd"]),
        "acc_curve": accs,
    }


def _best(
    make: Callable[[], nn.Sequential], data: datasets.Dataset, epochs: int, seed: int
) -> dict[str, Any]:
    """The tracked run at each lr of LRS; the one of lowest final training loss (NaN = +inf),
    with its lr and every lr's training loss. Selection never sees the test set."""
    runs = {lr: _train_tracking(make(), data, epochs, lr, seed) for lr in LRS}
    losses = {
        lr: r["train_loss"] if math.isfinite(r["train_loss"]) else math.inf
        for lr, r in runs.items()
    }
    best = min(losses, key=lambda k: losses[k])
    return {**runs[best], "lr": best, "sweep": losses}


def _deep_ratio(batchnorm: bool, seed: int) -> float:
    """First/last gradient ratio at step 0 of the 20-layer sigmoid MLP on digits (watched)."""
    data = datasets.digits()
    net = models.mlp(64, 10, width=64, depth=20, activation="sigmoid", seed=seed)
    if batchnorm:
        net = _with_bn(net)
    run = fit(net, data, epochs=1, lr=0.05, max_steps=1, seed=seed, drop_last=True, watch=True)
    return step0_ratio(run.trace)


def _stable(label: str, shift: float) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    check(checks, f"{label}: sigmoid-input shift ≤ {SHIFT_MAX} (eval mode)", shift <= SHIFT_MAX)
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Plain vs BN, each at its best lr: input shift, test accuracy at equal steps, and the
    deep gradient ratio at step 0."""
    epochs = 6 if quick else 20
    data = datasets.mnist1d()
    base = models.mlp(40, 10, width=100, depth=4, activation="sigmoid", seed=seed)
    plain = _best(lambda: copy.deepcopy(base), data, epochs, seed)
    bn = _best(lambda: _with_bn(base), data, epochs, seed)
    lr_plain, lr_bn = plain["lr"], bn["lr"]
    sweep_plain, sweep_bn = plain["sweep"], bn["sweep"]
    ratio_plain, ratio_bn = _deep_ratio(False, seed), _deep_ratio(True, seed)
    checks = _stable("BN", bn["shift"])
    check(
        checks,
        "test accuracy at equal steps: BN ≥ plain + 0.05",
        bn["test_acc"] >= plain["test_acc"] + 0.05,
    )
    check(
        checks,
        "20-layer sigmoid at step 0: gradient ratio < 1e-6 without BN, ≥ 0.1 with BN",
        ratio_plain < 1e-6 and ratio_bn >= 0.1,
    )
    negative = control(NEGATIVE_CONTROL, _stable("plain", plain["shift"]))
    figures = save_figure(out_dir, "batchnorm", lambda ax: _plot(ax, plain, bn))
    return ExperimentResult(
        name="batchnorm",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "part1": f"MNIST-1D, 3×100 sigmoid MLP, default init, SGD momentum 0.9, batch 64 "
            f"(short last batch dropped), {epochs} epochs; BN via remedies.add_batchnorm",
            "lr_sweep": list(LRS),
            "lr_selection": "lowest final training loss, per net",
            "shift": f"last sigmoid's input on 500 training samples, eval mode, every {EVERY} "
            f"steps from step {WARM}: (max - min of a unit's mean) / its mean spread",
            "seed": seed,
            "part2": "digits, 20-layer width-64 sigmoid MLP, gradient ratio at step 0",
        },
        measured={
            "best_lr": {"plain": lr_plain, "bn": lr_bn},
            "sweep_train_loss": {
                "plain": {str(k): sig(v) for k, v in sweep_plain.items()},
                "bn": {str(k): sig(v) for k, v in sweep_bn.items()},
            },
            "test_acc_plain": round(plain["test_acc"], 3),
            "test_acc_bn": round(bn["test_acc"], 3),
            "input_shift_plain": sig(plain["shift"]),
            "input_shift_bn": sig(bn["shift"]),
            "bn_net_linear_output_shift": sig(bn["linear_shift"]),
            "train_loss_plain": sig(plain["train_loss"]),
            "train_loss_bn": sig(bn["train_loss"]),
            "deep_grad_ratio_plain": sig(ratio_plain, 2),
            "deep_grad_ratio_bn": sig(ratio_bn, 2),
        },
        paper={
            "imagenet_sigmoid_inception": "with BN 69.8% top-1; without: never > 1/1000",
            "science_md_20_layer_digits": {
                "ratio_plain": 1e-18,
                "ratio_bn": 0.68,
                "test_acc_plain": 0.10,
                "test_acc_bn": 0.92,
            },
        },
        criterion=f"each net at its best lr of {list(LRS)}: with BN the sigmoid-input shift "
        f"(eval mode) ≤ {SHIFT_MAX}; test accuracy ≥ plain + 0.05 at equal steps; 20-layer "
        "gradient ratio at step 0 ≥ 0.1 (plain < 1e-6)",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, plain: dict[str, Any], bn: dict[str, Any]) -> None:
    steps = [EVERY * i for i in range(len(plain["acc_curve"]))]
    ax.plot(steps, plain["acc_curve"], label="sigmoid MLP")
    ax.plot(steps, bn["acc_curve"], label="sigmoid MLP + BN")
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (MNIST-1D)")
    ax.set_title("batch normalization, 3×100 sigmoid (Ioffe Fig. 1a)")
    ax.legend()
