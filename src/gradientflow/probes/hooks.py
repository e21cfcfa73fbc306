"""Hook hygiene shared by every probe: hooks that never break training and never follow a copy.

* A hook is bound to the module it was registered on (a weak reference taken at attach). A
  ``copy.deepcopy(model)`` copies the module's hook dictionaries, so the copy calls the same
  function; called on any module but its own, the hook does nothing and removes itself from
  that module (:func:`bound_hook`).
* A hook that fails (an input it cannot measure: a nested tensor, a zero-width tensor) never
  raises into the forward or backward pass: its :class:`Stopper` records the reason, warns
  once, and the hooks of that probe stop measuring.

>>> import copy
>>> stop = Stopper("demo")
>>> lin = torch.nn.Linear(2, 2)
>>> calls = []
>>> h = lin.register_forward_hook(bound_hook(lin, stop, lambda m, a, o: calls.append(1)))
>>> twin = copy.deepcopy(lin)
>>> _ = twin(torch.ones(1, 2)); _ = lin(torch.ones(1, 2))
>>> len(calls), len(twin._forward_hooks), len(lin._forward_hooks)
(1, 0, 1)
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowWarning

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


class Stopper:
    """Whether a probe still measures; the first failure stops it with one warning."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.reason: str | None = None

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def fail(self, exc: BaseException) -> None:
        if self.reason is not None:
            return
        self.reason = f"{self.what}: {type(exc).__name__}: {exc}"
        warnings.warn(
            f"gradientflow stopped measuring {self.reason}. Training is not affected; "
            "the other statistics go on.",
            GradientFlowWarning,
            stacklevel=3,
        )

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)``; a failure stops the probe and is never raised."""
        if self.reason is not None:
            return
        try:
            fn(*args)
        except Exception as exc:  # a hook must never break the user's training
            self.fail(exc)


def forget(module: nn.Module, hook: Any) -> None:
    """Remove ``hook`` from every hook dictionary of ``module`` (a copy that carried it)."""
    for attr in _HOOK_DICTS:
        hooks = getattr(module, attr, None)
        if not isinstance(hooks, dict):
            continue
        for key in [k for k, v in hooks.items() if v is hook]:
            hooks.pop(key, None)
            for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
                flags = getattr(module, extra, None)
                if isinstance(flags, dict):
                    flags.pop(key, None)


def bound_hook(
    module: nn.Module,
    stopper: Stopper,
    fn: Callable[..., Any],
    on_compile: Callable[[], None] | None = None,
) -> Any:
    """A module hook calling ``fn`` only for ``module`` itself, never raising.

    ``on_compile``: when the hook is traced by ``torch.compile`` (the user compiled a wrapper
    of the watched model, which the monitor cannot see), ``fn`` is not traced (its reads
    of values would break the graph); ``on_compile()`` is called instead, so the probe can
    stop arming its hooks.
    """
    owner = weakref.ref(module)

    def hook(mod: nn.Module, *args: Any) -> None:
        if mod is not owner():
            forget(mod, hook)  # a deepcopy of the watched module: inert, and gone from it
            return
        if on_compile is not None and torch.compiler.is_compiling():
            on_compile()
            return
        stopper.call(fn, mod, *args)

    return hook


def tensor_hook(stopper: Stopper, fn: Callable[[torch.Tensor], Any]) -> Any:
    """A tensor (gradient) hook calling ``fn``, never raising, never changing the gradient."""

    def hook(grad: torch.Tensor) -> None:
        stopper.call(fn, grad)

    return hook
