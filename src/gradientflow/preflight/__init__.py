"""Preflight: predict vanishing and exploding gradients before the first step.

``preflight(model, example_input)`` runs one forward and one backward pass at init (no
optimizer step; weights, buffers, BatchNorm running statistics, train/eval mode and the RNG
state are left as they were) and reports, per weight layer in forward order, the activation RMS,
the RMS of ``∂L/∂s`` and the gain between consecutive layers; the mean-field prediction χ₁
(Poole et al. 2016; Schoenholz et al. 2017) with its depth scale ξ and the depth 6ξ beyond
which the net does not train; the input–output Jacobian's singular values; the recurrent
Jacobian of RNNs; a static lint; and findings with remedies, in the diagnosis' vocabulary.

>>> import math, torch
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> layers = []
>>> for _ in range(30):
...     lin = nn.Linear(256, 256)
...     _ = nn.init.normal_(lin.weight, 0, math.sqrt(1.0 / 256))
...     _ = nn.init.normal_(lin.bias, 0, math.sqrt(0.05))
...     layers += [lin, nn.Tanh()]
>>> pf = preflight(nn.Sequential(*layers[:-1]), torch.randn(64, 256))
>>> round(pf.chi1, 2), round(pf.max_trainable_depth), pf.depth, pf.findings[0].kind
(0.76, 22, 30, 'vanishing')
"""

from __future__ import annotations

import sys
import types
from typing import Any

from gradientflow.preflight.core import preflight
from gradientflow.preflight.measure import LayerStat
from gradientflow.preflight.result import Preflight
from gradientflow.preflight.verdict import Prediction

__all__ = ["LayerStat", "Prediction", "Preflight", "preflight"]


class _CallablePackage(types.ModuleType):
    """``gradientflow.preflight`` names both this package and its function: once the package
    is imported, Python binds the attribute to the package, so the package calls the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Preflight:
        return preflight(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
