"""``faster_hardware``: run the model on the fastest device there is.

The article's "faster hardware" remedy: vanishing gradients make learning slow, and more steps
per second buy back some of it (it does not change the gradient's scale). The transform picks
CUDA, then Apple's MPS, then the CPU; uses bfloat16 autocast where the device supports it
(CUDA with bf16 support; on CPU and MPS it stays in float32, where bf16 is rarely faster);
optionally compiles with ``torch.compile``; and reports what it chose.

The returned :class:`FasterModel` moves tensor inputs to its device and the outputs back to the
inputs' device, so the user's data and loss function need no change.

>>> import torch
>>> from torch import nn
>>> fast = faster_hardware(nn.Linear(4, 2), verbose=False)
>>> fast.choice["device"] in ("cuda", "mps", "cpu")
True
>>> tuple(fast(torch.randn(3, 4)).shape)
(3, 2)
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.modules import clone
from gradientflow.remedies.remedy import Remedy


def best_device() -> tuple[str, str]:
    """(device type, why) for the fastest available device."""
    if torch.cuda.is_available():
        return "cuda", f"CUDA GPU {torch.cuda.get_device_name(0)}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps", "Apple GPU (MPS)"
    return "cpu", "no CUDA or MPS device found"


def _autocast_dtype(device: str) -> torch.dtype | None:
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _map_dict(value: dict[Any, Any], fn: Callable[[Any], Any]) -> dict[Any, Any]:
    """``value`` with ``fn`` applied to each item, of the same type (a Hugging Face
    ``ModelOutput`` stays one, with its attributes)."""
    if type(value) is dict:
        return {k: fn(v) for k, v in value.items()}
    out = copy.copy(value)
    for k, v in value.items():
        out[k] = fn(v)
    return out


def _map_sequence(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` (a tuple, list or named tuple) with ``fn`` applied to each item."""
    items = [fn(v) for v in value]
    return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple | list):
        return _map_sequence(value, lambda v: _move(v, device))
    if isinstance(value, dict):
        return _map_dict(value, lambda v: _move(v, device))
    return value


def _first_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return None


class FasterModel(nn.Module):
    """Wraps a model on a device with optional autocast; inputs and outputs move for you."""

    def __init__(
        self,
        model: nn.Module,
        device: str,
        dtype: torch.dtype | None,
        compiled: Callable[..., Any] | None,
        choice: dict[str, Any],
    ) -> None:
        super().__init__()
        self.model = model
        self.device_type = device
        self.autocast_dtype = dtype
        self._compiled = [compiled] if compiled is not None else []  # not a submodule
        self.choice = choice

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        home = _first_device(args, kwargs)
        device = torch.device(self.device_type)
        args, kwargs = _move(args, device), _move(kwargs, device)
        run = self._compiled[0] if self._compiled else self.model
        if self.autocast_dtype is not None:
            with torch.autocast(self.device_type, dtype=self.autocast_dtype):
                out = run(*args, **kwargs)
        else:
            out = run(*args, **kwargs)
        if self.autocast_dtype is not None:
            out = _float(out)
        return out if home is None or home == device else _move(out, home)


def _float(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, tuple | list):
        return _map_sequence(value, _float)
    if isinstance(value, dict):  # a dict, or a Hugging Face ModelOutput
        return _map_dict(value, _float)
    return value


def faster_hardware(
    model: nn.Module,
    *,
    device: str | None = None,
    autocast: bool = True,
    compile: bool = False,
    verbose: bool = True,
) -> FasterModel:
    """A copy of ``model`` on the best device, with bf16 autocast where supported.

    ``device`` forces one ("cuda", "mps", "cpu"); ``compile=True`` adds ``torch.compile``.
    The choice is in ``.choice`` and, with ``verbose``, printed to stderr.

    >>> from torch import nn
    >>> faster_hardware(nn.Linear(2, 2), device="cpu", verbose=False).choice["autocast"]
    'none (float32)'
    """
    if device is None:
        device, why = best_device()
    elif device not in ("cuda", "mps", "cpu"):
        raise GradientFlowError(
            f"faster_hardware(): device must be cuda, mps or cpu, not {device!r}"
        )
    else:
        why = "asked for"
    new = clone(model, "faster_hardware").to(device)
    dtype = _autocast_dtype(device) if autocast else None
    compiled = torch.compile(new) if compile else None
    choice = {
        "device": device,
        "why": why,
        "autocast": "bfloat16" if dtype is not None else "none (float32)",
        "compile": bool(compile),
    }
    if verbose:
        print(
            f"gradientflow: faster_hardware: device {device} ({why}), autocast "
            f"{choice['autocast']}, torch.compile {'on' if compile else 'off'}",
            file=sys.stderr,
        )
    return FasterModel(new, device, dtype, compiled, choice)


def applies(model: nn.Module) -> str | None:
    """None when a CUDA or MPS device is here, else the reason moving to it does not apply."""
    device, _ = best_device()
    return "no CUDA or MPS device here: the CPU is already the fastest" if device == "cpu" else None


def _quietly(model: nn.Module) -> nn.Module:
    return faster_hardware(model, verbose=False)


#: The remedy this file declares.
REMEDIES: tuple[Remedy, ...] = (
    Remedy(
        "faster_hardware",
        "faster hardware",
        "runs on the fastest device (CUDA/MPS), bf16 autocast where supported",
        _quietly,
        check=applies,
    ),
)
