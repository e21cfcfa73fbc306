"""dying-relu: ReLUs pushed into the negative region die for good; LeakyReLU, PReLU and ELU
units keep a gradient there and come back.

Source: the seed article (dying ReLU; LReLU, PReLU, ELU as remedies); Maas et al. 2013 (leaky
ReLU), He et al. 2015 (PReLU), Clevert et al. 2016 (ELU). A ReLU whose input is negative for
every sample has gradient exactly 0 for every sample: nothing can move it back, and it never
learns again. The leaky variants have a non-zero slope there.

On digits, an MLP (3 hidden layers of 128, He init) starts with every hidden bias at −2.5, so a
large part of the units are negative on every training sample, and is trained with Adam. We
measure, at init and every 5 epochs, the fraction of hidden units whose pre-activation is ≤ 0
on every training sample (a count that can rise or fall for every activation), check that the
ReLU's such units get exactly zero gradient, and read the monitor's ``in_dead_frac``. The claim
is not tied to one budget: over longer training ReLUs *do* revive (the layers below move), so
the criterion compares the activations at every checkpoint. Negative control: the ReLU net must
fail the leaky variants' revival criterion.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import finding_kinds, fit

CLAIM = (
    "A ReLU whose input is negative for every sample gets exactly zero gradient of its own: it "
    "can come back only when the layers below move its input, so it stays dead far longer; "
    "LeakyReLU, PReLU and ELU units keep a gradient there and revive quickly."
)
SOURCE = "Seed article; Maas et al. 2013 (LReLU); He et al. 2015 (PReLU); Clevert et al. 2016"
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu")
BIAS, LR, WIDTH, DEPTH, CHECK_EVERY = -2.5, 0.003, 128, 4, 5
NEGATIVE_CONTROL = "the ReLU net under the leaky variants' revival criterion"


@torch.no_grad()
def negative_everywhere(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """Per hidden layer: fraction of units whose pre-activation is ≤ 0 on every row of ``x``.

    For ReLU these units output 0 and have slope 0 on every sample (dead); for the leaky
    variants the same count can rise or fall too: it is not zero by construction.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> len(negative_everywhere(net, torch.randn(4, 2)))
    1
    """
    return [float(m.all(0).float().mean()) for m in _masks(net, x)]


def _masks(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden Linear layer: the (samples, units) mask of pre-activation ≤ 0."""
    masks: list[torch.Tensor] = []
    h = x
    last = [m for m in net if isinstance(m, nn.Linear)][-1]
    for module in net:
        h = module(h)
        if isinstance(module, nn.Linear) and module is not last:
            masks.append(h <= 0)
    return masks


def dead_own_gradient(net: nn.Sequential, data: datasets.Dataset) -> float:
    """Largest |∂L/∂W| over the incoming weights of units negative on every training sample,
    for the whole training set (plain autograd); 0.0 exactly for ReLU, not for the others."""
    with torch.no_grad():
        dead = [m.all(0) for m in _masks(net, data.x_train)]
    layers = [m for m in net if isinstance(m, nn.Linear)][:-1]
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(data.x_train), data.y_train).backward()
    worst = 0.0
    for layer, mask in zip(layers, dead, strict=True):
        if layer.weight.grad is not None and bool(mask.any()):
            worst = max(worst, float(layer.weight.grad[mask].abs().max()))
    net.zero_grad(set_to_none=True)
    return worst


def _one(act: str, epochs: int, data: datasets.Dataset, seed: int) -> dict[str, Any]:
    net = models.mlp(
        64, 10, width=WIDTH, depth=DEPTH, activation=act, init="he", bias=BIAS, seed=seed
    )
    own_grad = dead_own_gradient(net, data)
    curve = [max(negative_everywhere(net, data.x_train))]
    per_epoch = len(data.x_train) // 64

    def on_step(step: int, _model: nn.Module) -> None:
        if (step + 1) % (per_epoch * CHECK_EVERY) == 0:
            curve.append(max(negative_everywhere(net, data.x_train)))

    result = fit(
        net,
        data,
        epochs=epochs,
        lr=LR,
        optimizer="adam",
        seed=seed,
        drop_last=True,
        watch=True,
        on_step=on_step,
    )
    return {
        "dead_own_grad_init": own_grad,
        "curve": curve,
        "monitor_dead_max": float(np.nanmax(result.trace.last_measured("in_dead_frac"))),
        "test_acc": result.test_acc,
        "losses": result.losses,
        "findings": finding_kinds(result.trace),
    }


def revives(label: str, curve: list[float]) -> list[dict[str, Any]]:
    """The leaky variants' criterion: the all-negative fraction (worst layer) halves by the
    first checkpoint and stays ≤ 0.1 from then on."""
    checks: list[dict[str, Any]] = []
    check(
        checks,
        f"{label}: all-negative fraction after {CHECK_EVERY} epochs ≤ 1/2 of its start",
        curve[1] <= 0.5 * curve[0],
    )
    check(checks, f"{label}: ≤ 0.1 at every later checkpoint", max(curve[1:]) <= 0.1)
    return checks


def _checks(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    relu = runs["relu"]
    checks: list[dict[str, Any]] = []
    check(
        checks,
        "relu: units negative on every sample get exactly zero weight gradient at init "
        "(and some exist: ≥ 25% of a layer)",
        relu["dead_own_grad_init"] == 0.0 and relu["curve"][0] >= 0.25,
    )
    check(
        checks,
        "relu: at every checkpoint ≥ 0.1 of some layer still all-negative, ≥ 3× each variant's",
        all(
            r >= 0.1 and all(r >= 3 * runs[a]["curve"][i] for a in ACTIVATIONS[1:])
            for i, r in enumerate(relu["curve"][1:], start=1)
        ),
    )
    check(
        checks,
        "relu: the monitor's in_dead_frac ≥ 0.2 in some layer",
        relu["monitor_dead_max"] >= 0.2,
    )
    check(
        checks,
        "diagnose(): 'dead_units' for relu, not for leaky_relu/prelu/elu",
        "dead_units" in relu["findings"]
        and all("dead_units" not in runs[a]["findings"] for a in ACTIVATIONS[1:]),
    )
    for act in ACTIVATIONS[1:]:
        checks += revives(act, runs[act]["curve"])
        check(checks, f"{act}: test accuracy ≥ 0.8", runs[act]["test_acc"] >= 0.8)
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Train the four activations from the same negative-bias start; compare."""
    epochs = 15 if quick else 30
    data = datasets.digits()
    runs = {act: _one(act, epochs, data, seed) for act in ACTIVATIONS}
    checks = _checks(runs)
    negative = control(NEGATIVE_CONTROL, revives("relu", runs["relu"]["curve"]))
    figures = save_figure(
        out_dir,
        "dying-relu",
        lambda ax: plot_loss_curves(
            ax,
            {a: r["losses"] for a, r in runs.items()},
            window=20,
            title=f"hidden biases start at {BIAS}",
        ),
    )
    return ExperimentResult(
        name="dying-relu",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "digits",
            "hidden_layers": DEPTH - 1,
            "width": WIDTH,
            "init": "He",
            "hidden_bias_at_init": BIAS,
            "optimizer": f"Adam lr {LR}, batch 64, short last batch dropped",
            "lr_note": "one lr for all four: the comparison is of the negative slope at equal "
            "step size (no sweep)",
            "epochs": epochs,
            "checkpoints_every_epochs": CHECK_EVERY,
            "seed": seed,
            "leaky_relu_slope": 0.01,
        },
        measured={
            "all_negative_worst_layer_init": {a: sig(r["curve"][0], 2) for a, r in runs.items()},
            "all_negative_worst_layer_end": {a: sig(r["curve"][-1], 2) for a, r in runs.items()},
            "all_negative_by_checkpoint": {
                a: [sig(v, 2) for v in r["curve"]] for a, r in runs.items()
            },
            "dead_units_own_grad_init": {
                a: sig(r["dead_own_grad_init"], 2) for a, r in runs.items()
            },
            "monitor_in_dead_frac_max": {a: sig(r["monitor_dead_max"], 2) for a, r in runs.items()},
            "test_acc": {a: round(r["test_acc"], 3) for a, r in runs.items()},
            "diagnose_findings": {a: r["findings"] for a, r in runs.items()},
        },
        criterion=f"relu: its all-negative units get exactly 0 gradient; at every checkpoint "
        f"(each {CHECK_EVERY} epochs) ≥ 0.1 of a layer still all-negative and ≥ 3× each variant's; "
        "diagnosed 'dead_units'; leaky/PReLU/ELU: all-negative fraction halves by the first "
        "checkpoint and stays ≤ 0.1, accuracy ≥ 0.8, not diagnosed 'dead_units'",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )
