"""The trainability lab experiment's learning-rate sweep: the rate is chosen by training
accuracy, never by the test accuracy it reports, and every rate starts from the same init."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradientflow.lab import datasets
from gradientflow.lab.experiments import trainability as exp


def test_sweep_chooses_by_training_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    # (training, test) accuracy per rate: the best test accuracy is at the rate whose training
    # accuracy is worst, so a choice made on the test set would report 0.9
    results = {1e-3: (0.95, 0.40), 3e-3: (0.60, 0.90), 1e-2: (0.10, 0.10)}
    inits: list[torch.Tensor] = []

    def fake_train(model: Any, data: Any, steps: int, lr: float, seed: int) -> tuple[float, float]:
        inits.append(model[0].weight.detach().clone())
        return results[lr]

    monkeypatch.setattr(exp, "train", fake_train)
    lr, test = exp.best_of_sweep(8, 1.76, datasets.digits(), steps=1, seed=3)
    assert (lr, test) == (1e-3, 0.40)
    assert len(inits) == len(exp.LRS) == 3
    assert all(torch.equal(w, inits[0]) for w in inits)  # one init for every rate


def test_sweep_tie_keeps_the_first_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exp, "train", lambda *a, **k: (0.5, 0.7 if a[3] == 1e-3 else 0.2))
    assert exp.best_of_sweep(4, 1.0, datasets.digits(), steps=1, seed=0) == (1e-3, 0.7)


def test_diverged_training_reads_zero() -> None:
    # a loss that is not finite stops the training: both accuracies read 0, not chance (0.1)
    model = exp.build(4, 1.0, seed=0)
    with torch.no_grad():
        model[-1].bias.fill_(float("nan"))
    assert exp.train(model, datasets.digits(), steps=5, lr=1e-2, seed=0) == (0.0, 0.0)
