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

import copy
import functools
from pathlib import Path
from typing import Any, cast

import torch

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import LR_SWEEP, best_lr, finding_kinds, fit, step0_ratio

CLAIM = (
    "A deep sigmoid net trained from random init gets stuck; pretraining it one layer at a "
    "time (unsupervised autoencoders) and then fine-tuning makes it train."
)
SOURCE = "Hinton et al. 2006; Bengio et al. 2007, Greedy layer-wise training of deep networks"
DEPTH, WIDTH, PRE_LR = 10, 64, 0.01
NEGATIVE_CONTROL = "the random-init net under the pretrained net's criterion"


def trains(label: str, acc: float, kinds: list[str]) -> list[dict[str, Any]]:
    """What a net that trains shows: test accuracy ≥ 0.85 and no 'vanishing' finding."""
    checks: list[dict[str, Any]] = []
    check(checks, f"{label}: test accuracy ≥ 0.85", acc >= 0.85)
    check(checks, f"{label}: diagnose() reports no 'vanishing'", "vanishing" not in kinds)
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Random init vs greedy pretraining (``remedies.layerwise_pretrain``), same fine-tuning."""
    from gradientflow.remedies import layerwise_pretrain

    pre_epochs, epochs = (5, 10) if quick else (10, 30)
    data = datasets.digits()
    random_net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="sigmoid", seed=seed)
    # the pretraining data: pre_epochs shuffled passes over the training inputs, one Adam step
    # per batch and layer (the labels are not used)
    stream = list(
        datasets.batches(
            data.x_train,
            data.y_train,
            batch_size=64,
            epochs=pre_epochs,
            seed=seed,
            drop_last=True,
        )
    )
    torch.manual_seed(seed)  # the throw-away decoders' init
    pre_net = layerwise_pretrain(random_net, stream, steps_per_layer=len(stream), lr=PRE_LR)
    ae_losses = cast(list[float], pre_net.pretrain_mse)  # relative to the input's variance
    out: dict[str, dict[str, Any]] = {}
    kw: dict[str, Any] = {"epochs": epochs, "momentum": 0.9, "seed": seed, "drop_last": True}
    for label, net in (("random init", random_net), ("pretrained", pre_net)):
        lr, _, _ = best_lr(functools.partial(copy.deepcopy, net), data, LR_SWEEP, **kw)
        r = fit(net, data, lr=lr, watch=True, **kw)
        out[label] = {
            "lr": lr,
            "test_acc": r.test_acc,
            "train_loss": r.train_loss,
            "ratio": step0_ratio(r.trace),
            "losses": r.losses,
            "findings": finding_kinds(r.trace),
        }
    rnd, pre = out["random init"], out["pretrained"]
    checks: list[dict[str, Any]] = []
    check(checks, "random init: test accuracy ≤ 0.3 (stuck)", rnd["test_acc"] <= 0.3)
    checks += trains("pretrained", pre["test_acc"], pre["findings"])
    check(
        checks,
        "pretrained: first/last gradient ratio at step 0 ≥ 100× random init's",
        pre["ratio"] >= 100 * rnd["ratio"],
    )
    check(checks, "random init: diagnose() reports 'vanishing'", "vanishing" in rnd["findings"])
    negative = control(NEGATIVE_CONTROL, trains("random init", rnd["test_acc"], rnd["findings"]))
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
            "fine_tuning": f"SGD momentum 0.9, batch 64 (short last batch dropped), {epochs} "
            f"epochs, each net at its best lr of {list(LR_SWEEP)} (lowest final training loss)",
            "seed": seed,
        },
        measured={
            "best_lr": {"random init": rnd["lr"], "pretrained": pre["lr"]},
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
        criterion="each net at its best fine-tuning lr: random init ≤ 0.3 test accuracy and "
        "diagnosed 'vanishing'; pretrained ≥ 0.85, gradient ratio ≥ 100× random's, not "
        "diagnosed 'vanishing'",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )
