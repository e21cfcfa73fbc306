"""The built-in demo: a 20-layer sigmoid MLP on scikit-learn's digits, PyTorch's default init.

Its gradients vanish toward the input (SCIENCE.md: first/last gradient ratio about 1e-18 at
step 0, test accuracy 0.10 after 20 epochs). ``gradientflow diagnose`` with no argument runs it.

>>> recipe = demo_recipe(epochs=1)
>>> sorted(recipe)
['batches', 'evaluate', 'loss_fn', 'model', 'optimizer']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradientflow.lab import datasets

DEPTH = 20
WIDTH = 64
LR = 0.05
MOMENTUM = 0.9
BATCH = 64


def mlp(
    depth: int = DEPTH,
    width: int = WIDTH,
    activation: type[nn.Module] = nn.Sigmoid,
    n_in: int = 64,
    n_out: int = 10,
    seed: int = 0,
) -> nn.Sequential:
    """``depth`` Linear layers (depth-1 hidden ones of ``width``), PyTorch's init, seeded.

    The lab's builder (:func:`gradientflow.lab.models.mlp`) with the weights ``nn.Linear``
    draws itself (``init=None``).

    >>> [type(m).__name__ for m in mlp(depth=3, width=4)]
    ['Linear', 'Sigmoid', 'Linear', 'Sigmoid', 'Linear']
    """
    from gradientflow.lab.models import mlp as build

    return build(n_in, n_out, width=width, depth=depth, activation=activation, init=None, seed=seed)


def demo_recipe(epochs: int = 20, seed: int = 0) -> dict[str, Any]:
    """Everything ``gradientflow diagnose`` needs to train the demo model."""
    data = datasets.digits()
    model = mlp(seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def evaluate(m: nn.Module) -> float:
        return datasets.accuracy(m, data.x_test, data.y_test)

    return {
        "model": model,
        "optimizer": optimizer,
        "loss_fn": nn.CrossEntropyLoss(),
        "batches": datasets.batches(
            data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, seed=seed, drop_last=True
        ),
        "evaluate": evaluate,
    }
