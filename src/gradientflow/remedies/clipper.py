"""``clip_gradients``: rescale the gradient when its norm exceeds a threshold.

Pascanu, Mikolov & Bengio (2013): if ‖g‖ ≥ c then g ← c·g/‖g‖. The direction is kept, only the
step length is capped, so one exploding step cannot throw the weights far away. Clipping does not
help vanishing gradients.

:func:`clip_gradients` returns a :class:`GradientClipper`; attach it to an optimizer and it clips
all of the optimizer's gradients right before every ``optimizer.step()`` (a step pre-hook, so
it works with any training loop, GradScaler included: ``scaler.step`` unscales first).

>>> import torch
>>> from torch import nn
>>> model = nn.Linear(4, 1)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> clipper = clip_gradients(max_norm=1.0).attach(opt)
>>> (model(torch.full((2, 4), 100.0)).sum() * 1e3).backward()
>>> opt.step()
>>> clipper.clipped, clipper.last_norm > 1.0
(1, True)
>>> clipper.detach()
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from gradientflow.errors import GradientFlowError


class GradientClipper:
    """Clips an optimizer's gradients to ``max_norm`` before each step.

    ``clipped`` counts the steps it rescaled, ``steps`` all steps seen, ``last_norm`` is the
    gradient norm before clipping at the last step (``inf``/``nan`` stay as they are: a
    non-finite gradient is not made finite by clipping, the monitor reports it).
    """

    def __init__(self, max_norm: float, norm_type: float = 2.0) -> None:
        if not (isinstance(max_norm, int | float) and max_norm > 0 and math.isfinite(max_norm)):
            raise GradientFlowError(
                f"clip_gradients(): max_norm must be a positive finite number, got {max_norm!r}"
            )
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.clipped = 0
        self.steps = 0
        self.last_norm = float("nan")
        self._handles: list[RemovableHandle] = []

    def clip(self, optimizer: torch.optim.Optimizer) -> float:
        """Clip the optimizer's current gradients now; returns the norm before clipping."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return 0.0
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)
        value = float(norm)
        self.steps += 1
        self.last_norm = value
        if value > self.max_norm:
            self.clipped += 1
        return value

    def _hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.clip(optimizer)

    def attach(self, optimizer: torch.optim.Optimizer) -> GradientClipper:
        """Clip before every ``optimizer.step()`` from now on; returns ``self``."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise GradientFlowError(
                "clip_gradients().attach(): expected a torch.optim.Optimizer, got "
                f"{type(optimizer).__name__}"
            )
        self._handles.append(optimizer.register_step_pre_hook(self._hook))
        return self

    def detach(self) -> None:
        """Remove the hooks; the optimizer steps unclipped again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __repr__(self) -> str:
        return (
            f"GradientClipper(max_norm={self.max_norm}, clipped {self.clipped} of "
            f"{self.steps} steps)"
        )


def clip_gradients(max_norm: float = 1.0, norm_type: float = 2.0) -> GradientClipper:
    """A :class:`GradientClipper` for ``max_norm``; call ``.attach(optimizer)`` to use it.

    >>> clip_gradients(0.5)
    GradientClipper(max_norm=0.5, clipped 0 of 0 steps)
    """
    return GradientClipper(max_norm, norm_type)


#: The remedy this file declares: no transform, a clip while training (``Remedy.prepare``).
