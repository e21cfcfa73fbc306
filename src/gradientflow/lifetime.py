"""A monitor used without ``with``: it records until ``close()``; a forgotten one is closed for
the user (its data flushed) with one warning that says what to do.

``watch(model, opt)`` installs its hooks at once, so both ways of using it record from the first
optimizer step on:

* ``with gradientflow.watch(model, opt) as mon: ...`` closes the monitor when the block ends;
* ``mon = gradientflow.watch(model, opt)`` records until ``mon.close()`` (``detach()``).

A monitor still attached when it is garbage-collected, or when the interpreter exits, is closed
here: its pending records are flushed to its ``log_dir`` and loggers, and an
:class:`UnclosedMonitorWarning` names ``mon.close()`` and the ``with`` form.

>>> import warnings, torch, gradientflow
>>> model = torch.nn.Linear(3, 1)
>>> mon = gradientflow.watch(model)
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     close_forgotten(mon, "at interpreter exit")
>>> print(caught[0].message)  # doctest: +ELLIPSIS
gradientflow: a monitor from watch() was never closed; it was closed at interpreter exit. Call \
mon.close() when training ends, or use `with gradientflow.watch(model, optimizer) as mon:`
"""

from __future__ import annotations

import atexit
import contextlib
import warnings
import weakref
from typing import Any

from gradientflow.errors import GradientFlowWarning

#: Monitors attached and not yet closed (weakly held: a monitor's lifetime is the user's).
_open: weakref.WeakSet[Any] = weakref.WeakSet()


class UnclosedMonitorWarning(GradientFlowWarning):
    """A monitor from ``watch()`` was left attached; gradientflow closed it (data kept)."""


def opened(monitor: Any) -> None:
    """``monitor`` installed its hooks: it is closed at exit if the user does not close it."""
    _open.add(monitor)


def closed(monitor: Any) -> None:
    """``monitor`` was closed (``close()``, ``detach()`` or the end of a ``with`` block)."""
    _open.discard(monitor)


def collected(monitor: Any) -> None:
    """Called from ``Monitor.__del__``: a monitor dropped while still attached."""
    if getattr(monitor, "_attached", False):
        close_forgotten(monitor, "when it was garbage-collected")


def close_forgotten(monitor: Any, when: str) -> None:
    """Flush and close ``monitor`` (never raises), with one warning saying what to do."""
    try:
        where = _saved_to(monitor)
        warnings.warn(
            f"gradientflow: a monitor from watch() was never closed; it was closed {when}"
            f"{where}. Call mon.close() when training ends, or use "
            "`with gradientflow.watch(model, optimizer) as mon:`",
            UnclosedMonitorWarning,
            stacklevel=2,
        )
    finally:
        monitor._detach()  # flushes to every listener; never raises


def _saved_to(monitor: Any) -> str:
    from gradientflow.listeners import RunDirectory

    for listener in getattr(monitor.recorder, "listeners", ()):
        if isinstance(listener, RunDirectory):
            return f" (its records were flushed to {listener.writer.path})"
    return ""


@atexit.register
def _close_all_at_exit() -> None:
    for monitor in list(_open):
        if getattr(monitor, "_attached", False):
            with contextlib.suppress(Exception):  # at exit nothing may raise
                close_forgotten(monitor, "at interpreter exit")
