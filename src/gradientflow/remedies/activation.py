"""``swap_activation``: replace the activation functions, and the init that must come with them.

An activation alone is half a remedy: ReLU with PyTorch's default init still vanishes
(SCIENCE.md: first/last gradient ratio 5e-8 on the 20-layer demo) while ReLU with He init keeps
the per-layer gain at 1. So the layers next to each swapped activation are re-initialised:

=====================================  ===========================
new activation                          init of the adjacent layers
=====================================  ===========================
relu, leaky_relu, prelu, elu, gelu ...  He (N(0, 2/fan_in))
selu                                    LeCun normal (N(0, 1/fan_in)), Dropout -> AlphaDropout
tanh, sigmoid, softsign, hardtanh       Xavier (Glorot & Bengio 2010)
=====================================  ===========================

Activations called as functions inside a ``forward`` (``F.relu(x)``, ``torch.sigmoid(x)``)
cannot be swapped by replacing modules; they are found and reported with their file and line.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Dropout(0.1), nn.Linear(8, 2))
>>> new = swap_activation(model, "selu")
>>> [type(m).__name__ for m in new]
['Linear', 'SELU', 'AlphaDropout', 'Linear']
>>> type(model[1]).__name__
'Sigmoid'
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import modules
from gradientflow.remedies.modules import (
    ACTIVATION_MODULES,
    WEIGHT_LAYERS,
    activation_kind,
    clone,
    functional_activations,
    graph_activations,
    refuse_parametrized,
    set_submodule,
)
from gradientflow.remedies.reinit import SCHEMES, init_weight_layer
from gradientflow.remedies.remedy import Remedy

#: The init each activation needs (the "companion" change).
COMPANION_INIT: dict[str, str] = {
    **{name: "he" for name in ACTIVATION_MODULES},
    "selu": "lecun",
    "tanh": "xavier",
    "sigmoid": "xavier",
    "softsign": "xavier",
    "hardtanh": "xavier",
    "hardsigmoid": "xavier",
    "logsigmoid": "xavier",
    "tanhshrink": "xavier",
}

_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "prelu": lambda: nn.PReLU(num_parameters=1, init=0.25),
}


def _make(name: str) -> nn.Module:
    factory = _FACTORIES.get(name)
    return factory() if factory is not None else ACTIVATION_MODULES[name]()


def _neighbours(leaves: list[tuple[str, nn.Module]], i: int) -> list[str]:
    """Weight layers right before and right after leaf ``i`` (not crossing an activation)."""
    found: list[str] = []
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(leaves):
            name, module = leaves[j]
            if isinstance(module, WEIGHT_LAYERS):
                found.append(name)
                break
            if activation_kind(module) is not None:
                break
            j += step
    return found


def _check_args(name: str, init: str | None, functional: str) -> str | None:
    if name not in ACTIVATION_MODULES:
        raise GradientFlowError(
            f"swap_activation(): unknown activation {name!r}; "
            f"choose one of {sorted(ACTIVATION_MODULES)}"
        )
    if functional not in ("error", "keep"):
        raise GradientFlowError(
            f"swap_activation(): functional must be 'error' or 'keep', got {functional!r}"
        )
    scheme = COMPANION_INIT[name] if init is None else init
    if scheme != "none" and scheme not in SCHEMES:
        raise GradientFlowError(
            f"swap_activation(): init must be one of {SCHEMES} or 'none', got {init!r}"
        )
    return None if scheme == "none" else scheme


def swap_activation(
    model: nn.Module,
    name: str,
    *,
    init: str | None = None,
    functional: str = "error",
    example_input: Any = None,
) -> nn.Module:
    """A copy of ``model`` with every activation module replaced by ``name``.

    The Linear/Conv layers right before and after each swapped activation are re-initialised
    with the activation's companion init (``init=`` overrides it; ``"none"`` keeps the weights).
    A weight tied to an embedding keeps its values (and the tie); a layer to re-initialise
    whose weights are parametrized (weight_norm, spectral_norm) is refused with a
    GradientFlowError naming it (``init="none"`` swaps without re-initialising).
    For ``"selu"``, every ``nn.Dropout`` becomes ``nn.AlphaDropout`` with the same rate.
    Activations called as functions in a ``forward`` raise a GradientFlowError naming file and
    line, unless ``functional="keep"`` (then only the modules are swapped). They are found by
    reading the source of each ``forward``; with ``example_input``, also in the autograd graph
    of one forward (which catches helper functions too).

    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> swap_activation(m, "relu")[1]
    ReLU()
    """
    scheme = _check_args(name, init, functional)
    new = clone(model, "swap_activation")
    calls = functional_activations(new)
    if example_input is not None:  # the graph also sees helper functions; skip lines seen
        seen = " ".join(calls)
        calls += [c for c in graph_activations(new, example_input) if c.split()[2] not in seen]
    if calls and functional == "error":
        raise GradientFlowError(
            "swap_activation(): activations called as functions cannot be swapped by "
            "replacing modules; rewrite them as nn.Module attributes, or pass "
            "functional='keep' to swap only the modules. Found: " + "; ".join(calls)
        )
    leaves = modules.leaves(new)
    touched: set[str] = set()
    made: dict[int, nn.Module] = {}  # one new module per old one: a shared one stays shared
    for i, (path, module) in enumerate(leaves):
        if activation_kind(module) is None:
            continue
        if id(module) not in made:
            made[id(module)] = modules.inherit(modules.matching(_make(name), new), module)
        set_submodule(new, path, made[id(module)])
        touched.update(_neighbours(leaves, i))
    swapped = len(made)
    if swapped == 0:
        raise GradientFlowError(
            f"swap_activation(): {type(model).__name__} has no activation module to swap "
            f"(looked for {', '.join(cls.__name__ for cls in ACTIVATION_MODULES.values())})"
        )
    if name == "selu":
        dropouts: dict[int, nn.Module] = {}
        for path, module in leaves:
            if type(module) is nn.Dropout:
                if id(module) not in dropouts:
                    dropouts[id(module)] = modules.inherit(nn.AlphaDropout(module.p), module)
                set_submodule(new, path, dropouts[id(module)])
    if scheme is not None:
        keep = modules.tied_to_other_modules(new)  # a decoder tied to the embedding
        refuse_parametrized([(p, new.get_submodule(p)) for p in sorted(touched)], "swap_activation")
        for path in sorted(touched):
            init_weight_layer(new.get_submodule(path), scheme, keep)
    return new


# ----------------------------------------------------------------------------- the remedies


def applies(target: str, model: nn.Module) -> str | None:
    """None when ``model`` has activation modules that are not all ``target`` already, and
    none called as a function in a ``forward``; else the reason the swap does not apply.

    >>> applies("relu", nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    'every activation is relu already'
    """
    kinds = {activation_kind(m) for _, m in modules.leaves(model)} - {None}
    if not kinds:
        return "the model has no activation module"
    if kinds == {target}:
        return f"every activation is {target} already"
    calls = functional_activations(model)
    if calls:
        return f"activations are called as functions in forward: {calls[0]}"
    return None


_TITLES = {
    "relu": "ReLU + He init",
    "leaky_relu": "LeakyReLU + He init",
    "prelu": "PReLU + He init",
    "elu": "ELU + He init",
    "selu": "SELU + LeCun init",
    "gelu": "GELU + He init",
    "tanh": "tanh + Xavier init",
}
#: SGD (momentum 0.9) learning rates measured on the digits demo (20-layer width-64 MLP, batch
#: 64, 20 epochs, 3 seeds): the ReLU family with He init 0.005 (0.003 in SCIENCE.md's table sits
#: right at 90%), SELU with LeCun init 0.003, tanh with Xavier 0.01.
_SWAP_LR = {"selu": 0.003, "tanh": 0.01}


def _swap_remedy(target: str) -> Remedy:
    init = {"he": "He", "lecun": "LeCun-normal", "xavier": "Xavier"}[COMPANION_INIT[target]]
    extra = ", Dropout -> AlphaDropout" if target == "selu" else ""
    check: Callable[[nn.Module], str | None] = partial(applies, target)
    return Remedy(
        name=f"swap_activation:{target}",
        title=_TITLES[target],
        changes=f"every activation becomes {target}; adjacent layers get {init} init{extra}",
        transform=partial(swap_activation, name=target),
        lr=_SWAP_LR.get(target, 0.005),
        check=check,
    )


#: The remedies this file declares: ``swap_activation:<name>``.
REMEDIES: tuple[Remedy, ...] = tuple(_swap_remedy(a) for a in _TITLES)
