"""One JSON convention for everything gradientflow writes (findings, run metadata, trials, lab).

Strict JSON has no NaN or infinity. gradientflow writes non-finite floats as the strings
``"nan"``, ``"inf"`` and ``"-inf"``; numpy and torch scalars become Python numbers, arrays and
tuples become lists, paths and other objects their ``str``.

>>> import numpy as np
>>> json_safe({"ratio": float("inf"), "xs": (1.0, float("nan")), "n": np.int64(3)})
{'ratio': 'inf', 'xs': [1.0, 'nan'], 'n': 3}
>>> json_safe(np.array([1.5, -np.inf])), json_safe(True)
([1.5, '-inf'], True)
>>> from_json_float("nan") != from_json_float("nan"), from_json_float("-inf"), from_json_float(2)
(True, -inf, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    """``x`` made strict-JSON-safe (see the module docstring for the convention)."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if x is None or isinstance(x, bool | str):
        return x
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()  # numpy / torch scalars
        if isinstance(x, bool):
            return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return str(x)


def from_json_float(x: Any) -> float:
    """The float that :func:`json_safe` wrote as ``x`` (``"nan"``/``"inf"`` included)."""
    return float(x)
