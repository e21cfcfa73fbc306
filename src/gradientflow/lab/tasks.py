"""Sequence tasks generated in code, for recurrent nets: long-range memory on demand.

* :func:`adding_batch` — the adding problem (Hochreiter & Schmidhuber 1997, exp. 4, in the
  variant of Arjovsky et al. 2016): each step carries a value drawn from U[0, 1] and a marker;
  exactly one marker is set in each half of the sequence, and the target is the sum of the two
  marked values. Always predicting 1 (the mean of the target) gives MSE 1/6 ≈ 0.167, so a model
  that beats 1/6 has carried information across at least T/2 steps.
* :func:`temporal_order_batch` — the temporal-order task (Hochreiter & Schmidhuber 1997,
  exp. 6a): a sequence of distractor symbols with two relevant symbols, each X or Y, at
  t1 ∈ [10, 20] and t2 ∈ [50, 60] (for T = 100; scaled with T); the class (XX, XY, YX, YY) is
  known only at the end.
* :func:`fresh_batches` — an endless, seeded stream of new batches of either task (there is no
  training set to overfit: every batch is new).

Inputs are batch-first, ``(batch, T, features)``.

>>> g = torch.Generator().manual_seed(0)
>>> x, y = adding_batch(4, 10, generator=g)
>>> tuple(x.shape), tuple(y.shape)
((4, 10, 2), (4, 1))
>>> bool((x[:, :, 1].sum(1) == 2).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from gradientflow.errors import GradientFlowError

#: Test MSE of always predicting 1 on the adding problem: Var(U1 + U2) = 2/12.
ADDING_BASELINE_MSE = 1.0 / 6.0

#: Symbols of the temporal-order task, in one-hot order.
TEMPORAL_SYMBOLS = ("a", "b", "c", "d", "B", "E", "X", "Y")

Batch = tuple[torch.Tensor, torch.Tensor]


def _check(batch_size: int, seq_len: int, min_len: int, task: str) -> None:
    if batch_size < 1:
        raise GradientFlowError(f"{task}: batch_size must be >= 1, got {batch_size}")
    if seq_len < min_len:
        raise GradientFlowError(f"{task}: seq_len must be >= {min_len}, got {seq_len}")


def adding_batch(
    batch_size: int, seq_len: int, *, generator: torch.Generator | None = None
) -> Batch:
    """One batch of the adding problem: ``x`` (B, T, 2) float32, ``y`` (B, 1) float32.

    Channel 0 holds the values, channel 1 the markers; one marker falls in ``[0, T//2)`` and one
    in ``[T//2, T)``.

    >>> x, y = adding_batch(2, 6, generator=torch.Generator().manual_seed(1))
    >>> bool(torch.allclose((x[..., 0] * x[..., 1]).sum(1, keepdim=True), y))
    True
    """
    _check(batch_size, seq_len, 2, "adding_batch")
    values = torch.rand(batch_size, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, seq_len, (batch_size,), generator=generator)
    markers = torch.zeros(batch_size, seq_len)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = (values * markers).sum(dim=1, keepdim=True)
    return x, y


def temporal_positions(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive ranges of t1 and t2: [10, 20] and [50, 60] at T = 100, scaled with T.

    >>> temporal_positions(100)
    ((10, 20), (50, 60))
    """
    s = seq_len / 100.0
    r1 = (max(1, round(10 * s)), max(1, round(20 * s)))
    r2 = (max(r1[1] + 1, round(50 * s)), max(r1[1] + 1, round(60 * s)))
    if r2[1] >= seq_len - 1:
        raise GradientFlowError(f"temporal_order_batch: seq_len {seq_len} is too short")
    return r1, r2


def temporal_order_batch(
    batch_size: int, seq_len: int = 100, *, generator: torch.Generator | None = None
) -> Batch:
    """One batch of the temporal-order task: ``x`` (B, T, 8) one-hot, ``y`` (B,) int64 in 0..3.

    The sequence starts with ``B`` and ends with ``E``; between them are random symbols from
    ``a``-``d`` except at t1 and t2, which hold X or Y. The class is 2·[s1 = Y] + [s2 = Y].
    The paper draws the length from 100-110 per sequence; here all sequences in a batch have
    length ``seq_len`` (no padding needed).

    >>> x, y = temporal_order_batch(3, 100, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape), int(x.sum()), bool(((y >= 0) & (y < 4)).all())
    ((3, 100, 8), 300, True)
    """
    _check(batch_size, seq_len, 12, "temporal_order_batch")
    (lo1, hi1), (lo2, hi2) = temporal_positions(seq_len)
    symbols = torch.randint(0, 4, (batch_size, seq_len), generator=generator)
    symbols[:, 0] = TEMPORAL_SYMBOLS.index("B")
    symbols[:, -1] = TEMPORAL_SYMBOLS.index("E")
    t1 = torch.randint(lo1, hi1 + 1, (batch_size,), generator=generator)
    t2 = torch.randint(lo2, hi2 + 1, (batch_size,), generator=generator)
    is_y = torch.randint(0, 2, (batch_size, 2), generator=generator)
    rows = torch.arange(batch_size)
    x_index = TEMPORAL_SYMBOLS.index("X")
    symbols[rows, t1] = x_index + is_y[:, 0]
    symbols[rows, t2] = x_index + is_y[:, 1]
    x = torch.nn.functional.one_hot(symbols, len(TEMPORAL_SYMBOLS)).float()
    y = 2 * is_y[:, 0] + is_y[:, 1]
    return x, y


TASKS: dict[str, Callable[..., Batch]] = {
    "adding": adding_batch,
    "temporal_order": temporal_order_batch,
}


def fresh_batches(
    task: str, batch_size: int, seq_len: int, *, seed: int = 0, n: int | None = None
) -> Iterator[Batch]:
    """New batches of ``task`` ("adding" or "temporal_order"), seeded, endless unless ``n``.

    >>> it = fresh_batches("adding", 8, 50, seed=3, n=2)
    >>> [tuple(x.shape) for x, _ in it]
    [(8, 50, 2), (8, 50, 2)]
    """
    if task not in TASKS:
        raise GradientFlowError(f"fresh_batches: unknown task {task!r}; known: {sorted(TASKS)}")
    make = TASKS[task]
    generator = torch.Generator().manual_seed(seed)
    count = 0
    while n is None or count < n:
        yield make(batch_size, seq_len, generator=generator)
        count += 1


def eval_set(task: str, n: int, seq_len: int, *, seed: int = 12345) -> Batch:
    """A fixed evaluation set of ``n`` sequences, from a seed distinct from training streams.

    >>> x, y = eval_set("adding", 100, 20)
    >>> abs(float(((y - 1.0) ** 2).mean()) - ADDING_BASELINE_MSE) < 0.06
    True
    """
    return next(fresh_batches(task, n, seq_len, seed=seed, n=1))
