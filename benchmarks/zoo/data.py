"""Data for the zoo: what ships with packages or is generated in code, never downloaded.

* scikit-learn's digits (8x8 images, 10 classes) and diabetes (a regression), both bundled
  with the package;
* MNIST-1D generated offline with ``make_dataset(get_dataset_args())`` (never
  ``get_dataset``, which downloads);
* synthetic tasks: the adding problem (Hochreiter & Schmidhuber 1997), token sequences for
  the transformers, a noisy smooth regression, a 2-D Gaussian for the GAN.

Every function is deterministic given its seed; results are float32 tensors on the CPU.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _split(x: np.ndarray, y: np.ndarray, n_test: int, seed: int = 0) -> Split:
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y)
    return xt[n_test:], yt[n_test:], xt[:n_test], yt[:n_test]


@lru_cache(maxsize=1)
def digits() -> Split:
    """scikit-learn's digits, pixels scaled to [0, 1]: 1397 train, 400 test, 64 features."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split(d.data / 16.0, d.target.astype(np.int64), 400)


def digit_images() -> Split:
    """The digits as (N, 1, 8, 8) images, standardised."""
    xtr, ytr, xte, yte = digits()
    mu, sd = xtr.mean(), xtr.std()
    return (
        ((xtr - mu) / sd).reshape(-1, 1, 8, 8),
        ytr,
        ((xte - mu) / sd).reshape(-1, 1, 8, 8),
        yte,
    )


@lru_cache(maxsize=1)
def mnist1d() -> Split:
    """MNIST-1D generated in code (4000 train, 1000 test, 40 features), standardised."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x, xt = np.asarray(d["x"], np.float32), np.asarray(d["x_test"], np.float32)
    mu, sd = x.mean(), x.std()
    return (
        torch.tensor((x - mu) / sd),
        torch.tensor(np.asarray(d["y"], np.int64)),
        torch.tensor((xt - mu) / sd),
        torch.tensor(np.asarray(d["y_test"], np.int64)),
    )


@lru_cache(maxsize=1)
def diabetes() -> Split:
    """scikit-learn's diabetes regression (442 patients, 10 features), all standardised."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    y = (d.target - d.target.mean()) / d.target.std()
    return _split(x, y[:, None], 100)


def smooth_regression(n: int = 2000, noise: float = 0.1, seed: int = 0) -> Split:
    """y = sin(2 x0) + x1^2 / 2 - x2 x3 + noise, x ~ N(0, 1)^8; noise floor ``noise**2``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 / 2 - x[:, 2] * x[:, 3]
    y = y + noise * rng.standard_normal(n)
    return _split(x, y[:, None], n // 5, seed)


def adding_problem(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: (n, length, 2) inputs, target the sum of the two marked values.

    Predicting the mean (1.0) gives a mean squared error of 1/6 ~ 0.167.
    """
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)
    marks = torch.zeros(n, length)
    first = torch.randint(0, length // 2, (n,), generator=g)
    second = torch.randint(length // 2, length, (n,), generator=g)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = torch.stack([values, marks], dim=-1)
    y = (values * marks).sum(dim=1, keepdim=True)
    return x, y


def majority_tokens(n: int, length: int, vocab: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Token sequences labelled 1 when most tokens are in the lower half of the vocabulary.

    ``length`` is odd, so there are no ties. Token 0 is kept free (a [CLS] position).
    """
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (n, length), generator=g)
    low = (tokens < (vocab + 1) // 2).sum(dim=1)
    labels = (low > length // 2).long()
    cls = torch.zeros(n, 1, dtype=torch.long)
    return torch.cat([cls, tokens], dim=1), labels


def progressions(n: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    """Sequences x_t = (a + b t) mod vocab with random a and b in {1, 2}: from the third token
    on, each token is determined by the two before it (a language model can drive its loss
    near 0; only the second token is a coin flip)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab, (n, 1), generator=g)
    b = torch.randint(1, 3, (n, 1), generator=g)
    t = torch.arange(length)[None, :]
    return (a + b * t) % vocab


def gaussian_2d(n: int, seed: int) -> torch.Tensor:
    """Samples of N((2, -1), diag(0.5^2, 0.3^2)): the GAN's real data."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * torch.tensor([0.5, 0.3]) + torch.tensor([2.0, -1.0])
