"""``reinit``: re-initialise the weight layers with a scheme that keeps the gradient's scale.

* ``"he"`` (He et al. 2015): N(0, 2/fan_in), for the ReLU family; per-layer gain χ₁ = 1 for ReLU.
* ``"xavier"`` (Glorot & Bengio 2010): U(±√(6/(fan_in+fan_out))), Var = 2/(fan_in+fan_out),
  for tanh and sigmoid.
* ``"lecun"`` (LeCun 1998; Klambauer et al. 2017): N(0, 1/fan_in), the fixed point of SELU.
* ``"orthogonal"`` (Saxe et al. 2014; Pennington et al. 2017): orthogonal matrices, singular
  values 1, dynamical isometry near a critical point.

Biases start at 0. Recurrent layers (RNN/LSTM/GRU) get the scheme on each gate's input and
recurrent matrix; an LSTM's forget gate bias starts at 1 (Gers et al. 2000), so it remembers by
default.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
>>> new = reinit(model, "he")
>>> round(float(new[0].weight.detach().var() * 256), 1)
2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from functools import partial

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.modules import (
    WEIGHT_LAYERS,
    clone,
    refuse_parametrized,
    tied_to_other_modules,
    weight_layers,
)
from gradientflow.remedies.remedy import Remedy

SCHEMES = ("he", "xavier", "lecun", "orthogonal")


def _fan_in(weight: torch.Tensor) -> int:
    return int(weight[0].numel()) if weight.dim() > 1 else int(weight.numel())


def _lecun(weight: torch.Tensor) -> None:
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(_fan_in(weight)))


def _he(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


def _xavier(weight: torch.Tensor) -> None:
    nn.init.xavier_uniform_(weight)


def _orthogonal(weight: torch.Tensor) -> None:
    nn.init.orthogonal_(weight)


INITIALISERS: dict[str, Callable[[torch.Tensor], None]] = {
    "he": _he,
    "xavier": _xavier,
    "lecun": _lecun,
    "orthogonal": _orthogonal,
}


def init_weight_layer(module: nn.Module, scheme: str, keep: AbstractSet[int] = frozenset()) -> None:
    """Re-initialise one Linear/Conv layer in place: weight by ``scheme``, bias 0; tensors
    whose id is in ``keep`` (tied to an embedding) keep their values."""
    with torch.no_grad():
        weight = module.weight
        if isinstance(weight, torch.Tensor) and id(weight) not in keep:
            INITIALISERS[scheme](weight)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and id(bias) not in keep:
            bias.zero_()


def init_recurrent(module: nn.RNNBase, scheme: str) -> None:
    """Re-initialise an RNN/LSTM/GRU in place (per gate block; forget-gate bias 1 for LSTM)."""
    gates = {"LSTM": 4, "GRU": 3}.get(type(module).__name__, 1)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith("bias"):
                param.zero_()
                if gates == 4 and name.startswith("bias_ih"):
                    h = param.shape[0] // 4
                    param[h : 2 * h] = 1.0  # forget gate (i, f, g, o order)
                continue
            for block in param.chunk(gates, dim=0):  # each gate's matrix on its own
                INITIALISERS[scheme](block)


def _check_scheme(scheme: str, fn: str) -> None:
    if scheme not in SCHEMES:
        raise GradientFlowError(f"{fn}(): unknown scheme {scheme!r}; choose one of {SCHEMES}")


def reinit(
    model: nn.Module, scheme: str = "he", *, only: str | Iterable[str] | None = None
) -> nn.Module:
    """A copy of ``model`` with its Linear/Conv/RNN layers re-initialised by ``scheme``.

    ``only`` limits it to the named layers (qualified names as in ``named_modules()``; one
    name or several); a name that is not a Linear, Conv or RNN layer is an error.
    Normalisation layers, embeddings and everything else keep their values, and so does a
    layer's weight tied to one of them (an output layer sharing the embedding's matrix: the
    tie is kept and the embedding is not re-drawn). A layer with parametrized weights
    (``torch.nn.utils.parametrizations.weight_norm``, ``spectral_norm``...) is refused with a
    GradientFlowError naming it; leave it out with ``only``.

    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> new = reinit(m, "orthogonal", only=["0"])
    >>> bool(torch.allclose(new[0].weight @ new[0].weight.T, torch.eye(8), atol=1e-5))
    True
    >>> bool(torch.equal(new[2].weight, m[2].weight))
    True
    """
    _check_scheme(scheme, "reinit")
    new = clone(model, "reinit")
    wanted = None if only is None else {only} if isinstance(only, str) else set(only)
    names = dict(new.named_modules())
    if wanted is not None and wanted - set(names):
        missing = sorted(wanted - set(names))
        raise GradientFlowError(f"reinit(): no submodule named {missing[0]!r} in the model")
    refuse_parametrized(
        [(n, m) for n, m in new.named_modules() if wanted is None or n in wanted], "reinit"
    )
    count = 0
    keep = tied_to_other_modules(new)
    for name, module in weight_layers(new):
        if wanted is None or name in wanted:
            init_weight_layer(module, scheme, keep)
            count += 1
    for name, module in new.named_modules():
        if isinstance(module, nn.RNNBase) and (wanted is None or name in wanted):
            init_recurrent(module, scheme)
            count += 1
    if count == 0 and wanted is not None:
        valid = [n for n, m in new.named_modules() if isinstance(m, (*WEIGHT_LAYERS, nn.RNNBase))]
        if valid:
            some = ", ".join(repr(n) for n in valid[:8]) + (", ..." if len(valid) > 8 else "")
            raise GradientFlowError(
                f"reinit(): only={sorted(wanted)} names no Linear, Conv or RNN layer (a "
                f"container or an activation is not re-initialised); the layers are {some}"
            )
    if count == 0:
        raise GradientFlowError(
            f"reinit(): {type(model).__name__} has no Linear, Conv or RNN layer to re-initialise"
        )
    return new


def applies(model: nn.Module) -> str | None:
    """None when ``model`` has a Linear, Conv or RNN layer to re-initialise, else the reason.

    >>> applies(nn.Sequential(nn.ReLU()))
    'the model has no Linear, Conv or RNN layer'
    """
    has = any(isinstance(m, (*WEIGHT_LAYERS, nn.RNNBase)) for m in model.modules())
    return None if has else "the model has no Linear, Conv or RNN layer"


def _reinit_remedy(scheme: str) -> Remedy:
    label = {"he": "He", "xavier": "Xavier", "lecun": "LeCun", "orthogonal": "orthogonal"}[scheme]
    return Remedy(
        name=f"reinit:{scheme}",
        title=f"{label} init",
        changes=f"Linear/Conv/RNN weights re-drawn with {label} init, biases 0",
        transform=partial(reinit, scheme=scheme),
        check=applies,
    )


#: The remedies this file declares: ``reinit:<scheme>``.
REMEDIES: tuple[Remedy, ...] = tuple(_reinit_remedy(s) for s in SCHEMES)
