"""Every way of stepping an optimizer reaches the same measuring point.

Two things stand between a monitor and the gradients an optimizer really uses:

* ``optimizer.step(closure)``: the closure runs the forward and backward pass *inside* the step
  (Lightning's automatic optimization, every ``LBFGS`` user). The optimizer's step pre-hook fires
  before it, when the gradients are still those of the previous step. :func:`read_after_closure`
  makes the pre-hook hand the optimizer a wrapped closure instead: the gradients are read right
  after the closure's *first* evaluation (the gradient at the current weights; LBFGS evaluates
  the closure several times per step), and then the step proceeds.
* Optimizer wrappers (accelerate's ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``)
  delegate ``step`` to the optimizer they hold. :func:`unwrap_optimizer` finds that optimizer, on
  which the hooks go; anything else is refused with one :class:`GradientFlowError` line.

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = torch.optim.SGD([w], lr=0.1)
>>> seen = []
>>> def pre_hook(optimizer, args, kwargs):
...     return read_after_closure(args, kwargs, lambda: seen.append(w.grad.tolist()))
>>> handle = opt.register_step_pre_hook(pre_hook)
>>> def closure():
...     opt.zero_grad()
...     loss = (3 * w).sum()
...     loss.backward()
...     return loss
>>> float(opt.step(closure))
6.0
>>> seen  # read after the closure's backward: d(3w)/dw = 3, not the stale None
[[3.0, 3.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradientflow.errors import GradientFlowError

__all__ = ["MEASURING_POINT", "closure_of", "read_after_closure", "unwrap_optimizer"]

#: Where the monitor reads the gradients (kept in every Trace's metadata).
MEASURING_POINT = (
    "gradients are read at the optimizer step (step pre-hook; with step(closure), right after "
    "the closure's first call): after gradient accumulation and, under torch.amp.GradScaler, "
    "after unscale_, so values are unscaled; when torch.nn.utils clipping runs on the watched "
    "parameters, grad_norm and global_grad_norm are read just before the step's first "
    "clipping call after its last backward pass (pre-clip) and grad_norm_postclip at the step"
)

_INNER = ("optimizer", "_optimizer")  # accelerate's AcceleratedOptimizer, LightningOptimizer
_MAX_DEPTH = 8


def closure_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The closure passed to ``optimizer.step`` (``args`` holds the optimizer first), or None."""
    if len(args) > 1:
        return args[1]
    return kwargs.get("closure")


class _ReadingClosure:
    """Calls the user's closure; after its first call (and only then) runs ``read``."""

    def __init__(
        self,
        closure: Callable[[], Any],
        read: Callable[[Any], None],
        on_fail: Callable[[], None] | None = None,
    ) -> None:
        self.closure = closure
        self.read = read
        self.on_fail = on_fail
        self.called = False

    def __call__(self) -> Any:
        try:
            out = self.closure()
        except BaseException:
            if not self.called and self.on_fail is not None:
                self.on_fail()
            raise
        if not self.called:
            self.called = True
            self.read(out)
        return out


def read_after_closure(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    read: Callable[[], None],
    on_loss: Callable[[torch.Tensor], None] | None = None,
    on_fail: Callable[[], None] | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """For a step pre-hook: run ``read`` now, or after the closure's first call if there is one.

    Returns what a step pre-hook returns: None (no closure: ``read`` has run) or the
    ``(args, kwargs)`` with the closure wrapped. ``on_loss`` is given what the closure's first
    call returned (the loss at the current weights), detached, if it is a scalar tensor;
    ``on_fail`` is called if that first call raises (the step fails before any reading).
    """
    closure = closure_of(args, kwargs)
    if closure is None:
        read()
        return None

    def after(out: Any) -> None:
        if on_loss is not None and isinstance(out, torch.Tensor) and out.numel() == 1:
            on_loss(out.detach())
        read()

    wrapped = _ReadingClosure(closure, after, on_fail)
    if len(args) > 1:
        return (args[0], wrapped, *args[2:]), kwargs
    return args, {**kwargs, "closure": wrapped}


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The ``torch.optim.Optimizer`` whose ``step`` really runs, under any wrappers.

    accelerate's ``AcceleratedOptimizer`` keeps it in ``.optimizer``, Lightning's
    ``LightningOptimizer`` in ``._optimizer``; hooks must go on that one (the wrapper's own
    ``step`` calls it). Anything that is neither an initialized optimizer nor such a wrapper is
    refused with a one-line :class:`GradientFlowError`.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    >>> class Wrapper:
    ...     def __init__(self, optimizer): self.optimizer = optimizer
    >>> unwrap_optimizer(Wrapper(Wrapper(opt))) is opt
    True
    >>> unwrap_optimizer("adam")
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: watch(): `optimizer` must be a torch.optim.Optimizer \
(or a wrapper holding one, e.g. accelerate's AcceleratedOptimizer), got <class 'str'>
    """
    if optimizer is None:
        return None
    current = optimizer
    for _ in range(_MAX_DEPTH):
        if _is_hookable(current):
            return current
        inner = next((getattr(current, a) for a in _INNER if hasattr(current, a)), None)
        if inner is None or inner is current:
            break
        current = inner
    raise GradientFlowError(
        "watch(): `optimizer` must be a torch.optim.Optimizer (or a wrapper holding one, e.g. "
        f"accelerate's AcceleratedOptimizer), got {type(optimizer)!r}"
    )


def _is_hookable(optimizer: Any) -> bool:
    """An optimizer set up by ``torch.optim.Optimizer.__init__`` (it has step hooks)."""
    return isinstance(optimizer, torch.optim.Optimizer) and (
        "_optimizer_step_pre_hooks" in vars(optimizer)
    )


def wrap_scaler(
    scaler: Any,
    optimizer: Any,
    stepped: Callable[[], bool],
    set_stepped: Callable[[bool], None],
    on_skip: Callable[[], None],
) -> None:
    """Wrap ``scaler.step`` (an instance attribute, removed at detach) so that a step that
    GradScaler skips, because it found inf/NaN, is still recorded (``on_skip``): the optimizer's
    hooks never fire for it."""
    original = scaler.step

    def step(opt: Any, *args: Any, **kwargs: Any) -> Any:
        set_stepped(False)
        out = original(opt, *args, **kwargs)
        if opt is optimizer and not stepped():
            on_skip()
        return out

    scaler.step = step
