"""pretraining: greedy layer-wise unsupervised pretraining lets a deep sigmoid net train.

Source: Hinton, Osindero & Teh 2006 (deep belief nets); Bengio, Lamblin, Popovici & Larochelle
2007 ("Greedy layer-wise training of deep networks", autoencoder variant): train one layer at a
time, unsupervised, on the output of the layers below, then fine-tune the whole net; randomly
initialised deep nets "often get stuck in poor solutions". (Exact error rates: unverified.)

On digits, a 10-layer sigmoid MLP (9 hidden layers of 64, PyTorch's default init) is fine-tuned
with SGD either from its random init or after greedy pretraining with the library's remedy
:func:`gradientflow.remedies.layerwise_pretrain`: each hidden layer (with its sigmoid) is the
encoder of an autoencoder whose linear decoder reconstructs the *standardised* output of the
already-trained layers below (MSE, Adam); the decoders are thrown away, so the pretrained net is
an ordinary MLP of the same shape.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import finding_kinds, fit, step0_ratio

CLAIM = (
    "A deep sigmoid net trained from random init gets stuck; pretraining it one layer at a "
    "time (unsupervised autoencoders) and then fine-tuning makes it train."
)
SOURCE = "Hinton et al. 2006; Bengio et al. 2007, Greedy layer-wise training of deep networks"
DEPTH, WIDTH, LR, PRE_LR = 10, 64, 0.05, 0.01


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Random init vs greedy pretraining (``remedies.layerwise_pretrain``), same fine-tuning."""
    from gradientflow.remedies import layerwise_pretrain

    pre_epochs, epochs = (5, 10) if quick else (10, 30)
    data = datasets.digits()
    random_net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="sigmoid", seed=0)
    # the pretraining data: pre_epochs shuffled passes over the training inputs, one Adam step
    # per batch and layer (the labels are not used)
    stream = list(
        datasets.batches(data.x_train, data.y_train, batch_size=64, epochs=pre_epochs, seed=0)
    )
    torch.manual_seed(0)  # the throw-away decoders' init
    pre_net = layerwise_pretrain(random_net, stream, steps_per_layer=len(stream), lr=PRE_LR)
    ae_losses = cast(list[float], pre_net.pretrain_mse)  # relative to the input's variance
    out: dict[str, dict[str, Any]] = {}
    for label, net in (("random init", random_net), ("pretrained", pre_net)):
        r = fit(net, data, epochs=epochs, lr=LR, momentum=0.9, seed=0, watch=True)
        out[label] = {
            "test_acc": r.test_acc,
            "train_loss": r.train_loss,
            "ratio": step0_ratio(r.trace),
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
    figures = save_figure(
        out_dir,
        "pretraining",
        lambda ax: plot_loss_curves(
            ax,
            {k: v["losses"] for k, v in out.items()},
            window=20,
            title=f"{DEPTH}-layer sigmoid MLP on digits",
            xlabel="fine-tuning step",
        ),
    )
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
            "pretraining": f"remedies.layerwise_pretrain: autoencoder per layer, Adam lr "
            f"{PRE_LR}, {pre_epochs} epochs each, decoder reconstructs the standardised input",
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
