"""pretraining: greedy layer-wise unsupervised pretraining lets a deep sigmoid net train.

Source: Hinton, Osindero & Teh 2006 (deep belief nets); Bengio, Lamblin, Popovici & Larochelle
2007 ("Greedy layer-wise training of deep networks", autoencoder variant): train one layer at a
time, unsupervised, on the output of the layers below, then fine-tune the whole net; randomly
initialised deep nets "often get stuck in poor solutions". (Exact error rates: unverified.)

On digits, a 10-layer sigmoid MLP (9 hidden layers of 64, PyTorch's default init) is fine-tuned
with SGD either from its random init or after greedy pretraining. Each hidden layer is pretrained
as a one-hidden-layer autoencoder (sigmoid encoder, linear decoder, MSE, Adam) on the
*standardised* output of the already-trained layers below; the standardisation is then folded
into the layer's weights and bias, so the pretrained net is an ordinary MLP of the same shape.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import finding_kinds, fit

CLAIM = (
    "A deep sigmoid net trained from random init gets stuck; pretraining it one layer at a "
    "time (unsupervised autoencoders) and then fine-tuning makes it train."
)
SOURCE = "Hinton et al. 2006; Bengio et al. 2007, Greedy layer-wise training of deep networks"
DEPTH, WIDTH, LR, PRE_LR = 10, 64, 0.05, 0.01


def greedy_pretrain(
    net: nn.Sequential, x: torch.Tensor, *, epochs: int, lr: float = PRE_LR, seed: int = 0
) -> list[float]:
    """Pretrain every hidden Linear of a sigmoid MLP in place; returns each AE's final loss.

    >>> net = models.mlp(4, 2, width=3, depth=3, activation="sigmoid")
    >>> len(greedy_pretrain(net, torch.randn(32, 4), epochs=1))
    2
    """
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    h = x
    losses: list[float] = []
    for i, layer in enumerate(hidden):
        mu, sd = h.mean(0), h.std(0) + 1e-3
        z = (h - mu) / sd
        torch.manual_seed(seed + i)
        decoder = nn.Linear(layer.out_features, layer.in_features)
        opt = torch.optim.Adam([*layer.parameters(), *decoder.parameters()], lr=lr)
        loss = torch.zeros(())
        for zb, _ in datasets.batches(z, z, batch_size=64, epochs=epochs, seed=seed + i):
            opt.zero_grad()
            loss = (decoder(torch.sigmoid(layer(zb))) - zb).pow(2).mean()
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
        with torch.no_grad():  # fold the standardisation into the layer
            layer.bias.sub_(layer.weight @ (mu / sd))
            layer.weight.div_(sd)
            h = torch.sigmoid(layer(h))
    return losses


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Random init vs greedy pretraining, same fine-tuning."""
    pre_epochs, epochs = (5, 10) if quick else (10, 30)
    data = datasets.digits()
    random_net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="sigmoid", seed=0)
    pre_net = copy.deepcopy(random_net)
    ae_losses = greedy_pretrain(pre_net, data.x_train, epochs=pre_epochs)
    out: dict[str, dict[str, Any]] = {}
    for label, net in (("random init", random_net), ("pretrained", pre_net)):
        r = fit(net, data, epochs=epochs, lr=LR, momentum=0.9, seed=0, watch=True)
        g = r.trace.metrics["grad_norm"]
        out[label] = {
            "test_acc": r.test_acc,
            "train_loss": r.train_loss,
            "ratio": float(g[0, 0] / g[0, -1]),
            "losses": r.losses,
            "findings": finding_kinds(r.trace),
        }
    rnd, pre = out["random init"], out["pretrained"]
    checks: list[dict[str, Any]] = []
    check(checks, "random init: test accuracy ≤ 0.3 (stuck)", rnd["test_acc"] <= 0.3)
    check(checks, "pretrained: test accuracy ≥ 0.85", pre["test_acc"] >= 0.85)
    check(
        checks,
        "pretrained: first/last gradient ratio at step 0 ≥ 100× random init's",
        pre["ratio"] >= 100 * rnd["ratio"],
    )
    check(
        checks,
        "diagnose(): 'vanishing' for random init, not after pretraining",
        "vanishing" in rnd["findings"] and "vanishing" not in pre["findings"],
    )
    figures = save_figure(out_dir, "pretraining", lambda ax: _plot(ax, out))
    return ExperimentResult(
        name="pretraining",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "digits",
            "depth": DEPTH,
            "width": WIDTH,
            "activation": "sigmoid",
            "init": "PyTorch default",
            "pretraining": f"autoencoder per layer, Adam lr "
            f"{PRE_LR}, {pre_epochs} epochs each, standardised inputs folded into the layer",
            "fine_tuning": f"SGD lr {LR} momentum 0.9, batch 64, {epochs} epochs",
        },
        measured={
            "test_acc_random": round(rnd["test_acc"], 3),
            "test_acc_pretrained": round(pre["test_acc"], 3),
            "train_loss_random": sig(rnd["train_loss"]),
            "train_loss_pretrained": sig(pre["train_loss"]),
            "grad_ratio_step0_random": sig(rnd["ratio"], 2),
            "grad_ratio_step0_pretrained": sig(pre["ratio"], 2),
            "autoencoder_final_mse": [sig(v, 2) for v in ae_losses],
            "diagnose_findings": {k: v["findings"] for k, v in out.items()},
        },
        paper={
            "claim": "random-init deep nets 'often get stuck in poor solutions' "
            "(exact error rates unverified)"
        },
        criterion="random init ≤ 0.3 test accuracy and diagnosed 'vanishing'; pretrained ≥ 0.85, "
        "gradient ratio ≥ 100× random's, not diagnosed 'vanishing'",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, out: dict[str, dict[str, Any]]) -> None:
    for label, r in out.items():
        k = 20
        ax.plot(np.convolve(r["losses"], np.ones(k) / k, mode="valid"), label=label)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title(f"{DEPTH}-layer sigmoid MLP on digits")
    ax.legend()
