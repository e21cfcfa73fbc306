"""The pieces of the recipe loop: the batches pass after pass, on the recipe's device, and the
learning rate each step used.

>>> list(Batches([1, 2], epochs=2))
[1, 2, 1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from gradientflow.probes.base import Probe

__all__ = ["Batches", "LearningRateProbe", "to_device"]


class Batches:
    """The recipe's batches pass after pass (``iter()`` again for each), moved to ``device``.

    ``epochs`` None: without end. After iterating, ``epoch`` is the number of complete passes
    and ``ran_out`` says why the stream ended before ``epochs`` (None when it did not).

    >>> b = Batches([1, 2], epochs=2)
    >>> list(b), b.epoch, b.ran_out
    ([1, 2, 1, 2], 2, None)
    >>> b = Batches(iter([1, 2]), epochs=3)
    >>> list(b), b.epoch, b.ran_out
    ([1, 2], 1, 'one-shot')
    """

    def __init__(
        self, batches: Iterable[Any], epochs: int | None = None, device: torch.device | None = None
    ) -> None:
        self.batches, self.epochs, self.device = batches, epochs, device
        self.epoch = 0
        self.ran_out: str | None = None

    def __iter__(self) -> Iterator[Any]:
        while self.epochs is None or self.epoch < self.epochs:
            it = iter(self.batches)
            n = 0
            for batch in it:
                n += 1
                yield batch if self.device is None else to_device(batch, self.device)
            if n == 0:
                self.ran_out = "empty" if self.epoch else None
                return
            self.epoch += 1
            if it is self.batches and (self.epochs is None or self.epoch < self.epochs):
                self.ran_out = "one-shot"  # an iterator cannot start again
                return


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (nested tuples, named tuples, lists, dicts) on ``device``.

    >>> x = to_device({"a": (torch.ones(1), [torch.zeros(2)]), "n": 3}, torch.device("meta"))
    >>> x["a"][0].is_meta, x["a"][1][0].is_meta, x["n"]
    (True, True, 3)
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        items = [to_device(v, device) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


class LearningRateProbe(Probe):
    """The learning rate of the optimizer's first parameter group, read at each recorded step
    before the optimizer moves the weights (so after a scheduler's change for that step).

    Kept in the Trace's metadata as ``meta["lr"]``: ``[[step, lr], ...]`` at the first step and
    wherever the rate changed. (A per-step Trace column would also need the run folder's reader
    to know the column; see the module notes.)

    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> probe = LearningRateProbe(opt)
    >>> for step in range(4):
    ...     _ = probe.on_step(step, True)
    ...     opt.param_groups[0]["lr"] *= 0.5 if step == 1 else 1
    >>> probe.meta()
    {'lr': [[0, 0.1], [2, 0.05]]}
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.changes: list[tuple[int, float]] = []

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        lr = self.optimizer.param_groups[0].get("lr")
        if lr is None:
            return {}
        value = float(lr)  # a Python float (a tensor lr is read once per recorded step)
        if not self.changes or self.changes[-1][1] != value:
            self.changes.append((step, value))
        return {}

    def meta(self) -> dict[str, Any]:
        return {"lr": [list(c) for c in self.changes]}
