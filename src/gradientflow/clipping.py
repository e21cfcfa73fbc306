"""Pre-clip gradients: read before ``clip_grad_norm_`` or ``clip_grad_value_`` change them.

Gradient clipping rewrites ``p.grad`` between ``backward()`` and ``optimizer.step()``, so a
monitor reading at the step would see the clipped gradients: a spike of 6,000 clipped to 1 looks
healthy. While a monitor is attached, PyTorch's clipping functions are wrapped so that a call on
watched parameters first lets the monitor read the per-layer norms (the *pre-clip* values, the
true gradient). What is wrapped (and restored when the last monitor detaches):

* ``torch.nn.utils.clip_grad._clip_grads_with_norm_``, which every ``clip_grad_norm_`` calls
  after computing the total norm: so ``clip_grad_norm_`` is caught however it was imported,
  including by Lightning, accelerate and the Hugging Face Trainer;
* ``torch.nn.utils.clip_grads_with_norm_`` and both names of ``clip_grad_value_``.

Only calls made on the thread that attached the monitor are read; other threads pass straight
through. Several monitors may be attached at once (each reads its own parameters). The first
clipping call between two optimizer steps holds the pre-clip values (a second one would see
already clipped gradients).

>>> import torch
>>> w = torch.nn.Parameter(torch.zeros(3))
>>> w.grad = torch.tensor([30.0, 40.0, 0.0])
>>> reader = ClipReader({id(w)}, lambda: float(w.grad.norm()))
>>> with reader:
...     total = torch.nn.utils.clip_grad_norm_([w], max_norm=1.0)
...     pre, again = reader.take(), reader.take()  # taken once per step
>>> pre, again, round(float(w.grad.norm()), 3)  # pre-clip norm, and the clipped gradient
(50.0, None, 1.0)
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType, TracebackType
from typing import Any

import torch
import torch.nn.utils
import torch.nn.utils.clip_grad

__all__ = ["ClipReader", "clipping_targets"]

_LOCK = threading.RLock()
#: Weak: a monitor dropped without close() must not be kept alive by the clipping wrappers
#: (its finalizer then closes it, which removes its reader).
_READERS: weakref.WeakSet[ClipReader] = weakref.WeakSet()
_PATCHED: dict[tuple[str, str], tuple[Any, Any]] = {}  # (module, name) -> (original, wrapper)
_MARK = "__gradientflow_clip_reader__"


def clipping_targets() -> list[tuple[ModuleType, str]]:
    """The (module, attribute) pairs wrapped while a monitor is attached."""
    utils, clip_grad = torch.nn.utils, torch.nn.utils.clip_grad
    return [
        (clip_grad, "_clip_grads_with_norm_"),
        (utils, "clip_grads_with_norm_"),
        (clip_grad, "clip_grad_value_"),
        (utils, "clip_grad_value_"),
    ]


class ClipReader:
    """Reads pre-clip values once per step when clipping touches the watched parameters.

    ``param_ids`` are the ``id()`` of the watched parameters (a set, or a function returning
    one); ``read`` measures and returns whatever the owner wants kept (device tensors), or None
    when the step is not recorded. ``take()`` returns it and resets for the next step.
    ``on_error`` receives an exception raised by ``read``; without it the exception propagates.
    """

    def __init__(
        self,
        param_ids: set[int] | Callable[[], set[int]],
        read: Callable[[], Any],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._ids = param_ids
        self._read = read
        self._on_error = on_error
        self.thread = threading.get_ident()
        self._pending: Any = None
        self._seen = False

    def before_clip(self, params: list[Any]) -> None:
        """A clipping call on ``params`` is about to change their gradients."""
        if self._seen or threading.get_ident() != self.thread:
            return
        ids = self._ids() if callable(self._ids) else self._ids
        if not any(id(p) in ids for p in params):
            return
        self._seen = True
        try:
            self._pending = self._read()
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)

    def take(self) -> Any:
        """What was read before this step's first clipping call (None if none); resets."""
        out, self._pending, self._seen = self._pending, None, False
        return out

    def attach(self) -> ClipReader:
        """Start catching clipping calls (wraps the functions if no reader did yet)."""
        self.thread = threading.get_ident()
        with _LOCK:
            if not _READERS:
                _install()
            _READERS.add(self)
        return self

    def remove(self) -> None:
        """Stop catching (and restore the functions when no reader is left). Idempotent."""
        with _LOCK:
            _READERS.discard(self)
            if not _READERS:
                _uninstall()
        self._pending, self._seen = None, False

    def __enter__(self) -> ClipReader:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _params(parameters: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    return list(parameters)  # a generator can be read once: it is handed on as a list


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def clipping(parameters: Any, *args: Any, **kwargs: Any) -> Any:
        if _READERS:
            parameters = _params(parameters)
            for reader in list(_READERS):
                reader.before_clip(parameters)
        return original(parameters, *args, **kwargs)

    setattr(clipping, _MARK, True)
    return clipping


def _install() -> None:
    for module, name in clipping_targets():
        current = getattr(module, name, None)
        if current is None or getattr(current, _MARK, False):
            continue  # absent in this torch, or ours left in place under someone else's wrapper
        wrapper = _wrap(current)
        _PATCHED[(module.__name__, name)] = (current, wrapper)
        setattr(module, name, wrapper)


def _uninstall() -> None:
    modules = {m.__name__: m for m, _ in clipping_targets()}
    for key, (original, wrapper) in list(_PATCHED.items()):
        module = modules[key[0]]
        if getattr(module, key[1], None) is wrapper:
            setattr(module, key[1], original)
            del _PATCHED[key]
        # else: someone wrapped our wrapper since; it stays (it passes calls straight through
        # when no reader is attached) rather than cutting their wrapper off
