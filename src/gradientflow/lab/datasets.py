"""Data that ships with packages or is generated in code; nothing is downloaded.

* :func:`digits` — scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), standardised.
* :func:`mnist1d` — MNIST-1D (Greydanus 2020), generated offline with the ``mnist1d`` package
  (4000 train / 1000 test, length 40, 10 classes).
* :func:`batches` — an epoch-by-epoch iterator of shuffled mini-batches, seeded.

>>> data = digits()
>>> data.x_train.shape[1], data.n_classes
(64, 10)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gradientflow.errors import GradientFlowError


@dataclass(frozen=True)
class Dataset:
    """A train/test split as float32 inputs and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train[0].numel())


def _need(module: str, extra: str = "lab") -> None:
    raise GradientFlowError(
        f"this needs the optional package {module!r}: pip install 'gradientflow[{extra}]'"
    )


@lru_cache(maxsize=4)
def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's digits, features standardised with the training set's statistics."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        _need("scikit-learn")
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    return Dataset(
        "digits",
        torch.tensor(x[train], dtype=torch.float32),
        torch.tensor(y[train], dtype=torch.int64),
        torch.tensor(x[test], dtype=torch.float32),
        torch.tensor(y[test], dtype=torch.int64),
        10,
    )


@lru_cache(maxsize=2)
def mnist1d(seed: int = 42) -> Dataset:
    """MNIST-1D generated in code (never downloaded): 4000 train / 1000 test, length 40."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        _need("mnist1d")
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    x, xt = np.asarray(d["x"], np.float32), np.asarray(d["x_test"], np.float32)
    mean, std = x.mean(), x.std() + 1e-6
    return Dataset(
        "mnist1d",
        torch.tensor((x - mean) / std),
        torch.tensor(np.asarray(d["y"]), dtype=torch.int64),
        torch.tensor((xt - mean) / std),
        torch.tensor(np.asarray(d["y_test"]), dtype=torch.int64),
        10,
    )


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 64,
    epochs: int = 1,
    seed: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches, ``epochs`` passes, the same order for the same seed.

    ``drop_last`` leaves out the short last batch of each epoch (1348 digits in batches of 64
    leave 4: BatchNorm statistics of 4 samples are noise).

    >>> x, y = torch.zeros(10, 2), torch.zeros(10)
    >>> [len(b[0]) for b in batches(x, y, batch_size=4)], [len(b[0]) for b in
    ...  batches(x, y, batch_size=4, drop_last=True)]
    ([4, 4, 2], [4, 4])
    """
    if batch_size < 1:
        raise GradientFlowError(f"batches: batch_size must be >= 1, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        stop = len(x) - len(x) % batch_size if drop_last else len(x)
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Classification accuracy in eval mode; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return float((model(x).argmax(-1) == y).float().mean())
    finally:
        model.train(was_training)
