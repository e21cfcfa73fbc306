"""The issue's digits result: a 20-layer sigmoid MLP that cannot learn, and remedies that fix it.

Baseline: 20 Linear layers of width 64, sigmoid, PyTorch's default init, SGD lr 0.05 momentum
0.9, 20 epochs of batch 64 (SCIENCE.md: 0.10 test accuracy, first/last gradient ratio 1e-18).
Each remedy trains on the same batches with the learning rate its Remedy suggests.

The 4-sample tail batch of each epoch (1348 = 21 * 64 + 4) is dropped for everyone: BatchNorm
statistics of 4 samples make the BN run spike (0.82-0.88 instead of 0.91-0.93 at lr 0.05).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.lab import datasets
from gradientflow.remedies import prescribe
from gradientflow.trial import trial

REMEDIES = [
    "swap_activation:relu",
    "swap_activation:selu",
    "add_batchnorm",
    "add_residual",
    "layerwise_pretrain",
]


@pytest.mark.slow
def test_remedies_rescue_the_20_layer_sigmoid_mlp_on_digits() -> None:
    data = datasets.digits()
    batches = list(
        datasets.batches(
            data.x_train, data.y_train, batch_size=64, epochs=20, seed=0, drop_last=True
        )
    )

    def accuracy(model: nn.Module) -> float:
        return datasets.accuracy(model, data.x_test, data.y_test)

    sgd = torch.optim.SGD(mlp(depth=2).parameters(), lr=0.05, momentum=0.9)
    table = trial(
        lambda: mlp(seed=0),
        batches,
        nn.CrossEntropyLoss(),
        REMEDIES,
        evaluate=accuracy,
        optimizer=sgd,
        metric_name="test acc",
        progress=False,
    )
    print("\n" + str(table))
    base = table["baseline"]
    assert base.metric <= 0.20 and base.grad_ratio < 1e-12
    for name in REMEDIES[:4]:
        assert table[name].metric >= 0.90, name
    assert table["layerwise_pretrain"].metric >= base.metric + 0.20
    # the gradient reaches the input: ratios near 1 with init/BN, >= 1e-3 through the skips
    for name in ("swap_activation:relu", "swap_activation:selu", "add_batchnorm"):
        assert 0.1 < table[name].grad_ratio < 10, name
    assert table["add_residual"].grad_ratio > 1e-3
    assert "vanishing" in base.findings
    # prescribe on the demo's diagnosis puts a remedy that reached >= 90% first
    first = prescribe(table.diagnosis, mlp(seed=0))[0].name
    assert table[first].metric >= 0.90, first
