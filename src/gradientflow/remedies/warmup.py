"""``warmup``: a linear learning-rate warmup, the companion of post-LN transformers.

Xiong et al. (2020) show why post-LN transformers need it: at initialisation the top blocks'
gradients are the largest, and a full learning rate on the first steps breaks them. The warmup
is a change to the training loop, not to the model: :class:`LinearWarmup` attaches to an
optimizer as a step pre-hook and sets each group's learning rate to
``base_lr · min(1, (t + 1) / steps)`` before step t; ``detach()`` restores the base rates. The
remedy's transform is a plain copy; the trial attaches the warmup through ``Remedy.prepare``.

>>> import torch
>>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
>>> w = LinearWarmup(4).attach(opt)
>>> lrs = []
>>> for _ in range(6):
...     opt.step(); lrs.append(opt.param_groups[0]["lr"])
>>> lrs
[0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
>>> w.detach()
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.remedy import Remedy

#: Default warmup length: Xiong et al. warm BERT/Transformer up over 4k of ~100k+ steps; a
#: trial runs a few hundred steps, so a quarter of a typical trial.
STEPS = 100


class LinearWarmup:
    """Linear warmup of an optimizer's learning rates over ``steps`` optimizer steps."""

    def __init__(self, steps: int = STEPS) -> None:
        if steps < 1:
            raise GradientFlowError(f"warmup: steps must be >= 1, got {steps}")
        self.steps, self.t = int(steps), 0
        self._opt: torch.optim.Optimizer | None = None
        self._base: list[float] = []
        self._handle: Any = None

    def attach(self, optimizer: torch.optim.Optimizer) -> LinearWarmup:
        """Warm ``optimizer`` up from its next step on; returns ``self``."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise GradientFlowError(
                f"warmup.attach(): expected a torch.optim.Optimizer, got {type(optimizer)!r}"
            )
        self._opt = optimizer
        self._base = [float(g["lr"]) for g in optimizer.param_groups]
        self._handle = optimizer.register_step_pre_hook(self._hook)
        return self

    def _hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        scale = min(1.0, (self.t + 1) / self.steps)
        for group, base in zip(optimizer.param_groups, self._base, strict=False):
            group["lr"] = base * scale
        self.t += 1

    def detach(self) -> None:
        """Remove the hook and give the optimizer its base learning rates back."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._opt is not None:
            for group, base in zip(self._opt.param_groups, self._base, strict=False):
                group["lr"] = base


@dataclasses.dataclass
class WarmupRemedy(Remedy):
    """A :class:`Remedy` whose companion change is a :class:`LinearWarmup`."""

    warmup_steps: int = STEPS

    def prepare(self, optimizer: torch.optim.Optimizer) -> Any:
        return LinearWarmup(self.warmup_steps).attach(optimizer)


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


REMEDY = WarmupRemedy(
    "warmup",
    f"LR warmup {STEPS}",
    f"the learning rate rises linearly from 0 over the first {STEPS} steps",
    _copy,
)

REMEDIES = [REMEDY]
