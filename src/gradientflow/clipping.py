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
        self._after: tuple[tuple[int, int], ...] | None = None  # the gradients after a clip

    def before_clip(self, params: list[Any]) -> None:
        """A clipping call on ``params`` is about to change their gradients. The step's first
        one is read; a later one only if a backward pass changed the gradients since the
        last clip (a clip after every micro-batch of an accumulation: the step's gradient is
        complete only at the last one), not a second clip of the same gradients (a value clip
        after a norm clip: the first reading is the true gradient)."""
        if threading.get_ident() != self.thread or not self._watched(params):
            return
        if self._seen and (self._after is None or _versions(params) == self._after):
            return
        self._seen = True
        try:
            self._pending = self._read()
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)

    def after_clip(self, params: list[Any]) -> None:
        """The clipping call has changed the gradients: note the watched ones as they are now
        (a clip of other parameters in between changes nothing this reader compares)."""
        if self._seen and threading.get_ident() == self.thread and self._watched(params):
            self._after = _versions(params)

    def _watched(self, params: list[Any]) -> bool:
        ids = self._ids() if callable(self._ids) else self._ids
        return any(id(p) in ids for p in params)

    def take(self) -> Any:
        """What was read before this step's clipping (None if none); resets."""
        out, self._pending, self._seen, self._after = self._pending, None, False, None
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


def _versions(params: list[Any]) -> tuple[tuple[int, int], ...] | None:
    """Each gradient's identity and in-place version (an accumulating backward bumps it);
    None where it cannot be read (no version counter)."""
    try:
        return tuple((id(p.grad), p.grad._version) for p in params if p.grad is not None)
    except (AttributeError, RuntimeError):  # an inference tensor has no version counter
        return None


def _params(parameters: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    return list(parameters)  # a generator can be read once: it is handed on as a list


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def clipping(parameters: Any, *args: Any, **kwargs: Any) -> Any:
        if not _READERS:
            return original(parameters, *args, **kwargs)
        parameters = _params(parameters)
        readers = list(_READERS)
        for reader in readers:
            reader.before_clip(parameters)
        out = original(parameters, *args, **kwargs)
        for reader in readers:
            reader.after_clip(parameters)
        return out

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
