"""Helpers the transforms share: module paths, leaves, weight layers, functional activations.

The names of activations, their modules and autograd nodes, and the weight layers come from
:mod:`gradientflow.kinds` (the one vocabulary); this module adds what rewriting a model needs.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
>>> activation_kind(model[1]), [name for name, _ in weight_layers(model)]
('sigmoid', ['0', '2'])
>>> [name for name, _ in leaves(model)]
['0', '1', '2']
"""

from __future__ import annotations

import copy
import inspect
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from gradientflow.errors import GradientFlowError
from gradientflow.kinds import (
    ACTIVATION_MODULES,
    WEIGHT_LAYERS,
    activation_of_module,
    activation_of_node,
)

__all__ = [
    "ACTIVATION_MODULES",
    "WEIGHT_LAYERS",
    "activation_kind",
    "clone",
    "functional_activations",
    "graph_activations",
    "inherit",
    "leaves",
    "out_features",
    "parametrized",
    "refuse_parametrized",
    "set_submodule",
    "tied_to_other_modules",
    "weight_layers",
]

#: The activation name of a module ("relu", "selu", ...), None for any other module.
activation_kind = activation_of_module

# functional spellings of activations in a forward: F.relu(x), torch.sigmoid(x), x.tanh(), ...
_FUNCTIONAL = "|".join(sorted(ACTIVATION_MODULES, key=len, reverse=True))
_FUNCTIONAL_RE = re.compile(
    rf"(?:\b(?:F|functional|torch|nn\.functional)\.({_FUNCTIONAL})_?\s*\()"
    rf"|(?:\.({_FUNCTIONAL})_?\(\s*\))"
)


def clone(model: nn.Module, fn: str) -> nn.Module:
    """A deep copy of ``model``; the transforms never touch their input."""
    if not isinstance(model, nn.Module):
        raise GradientFlowError(f"{fn}(): `model` must be an nn.Module, got {type(model).__name__}")
    try:
        return copy.deepcopy(model)
    except RuntimeError as exc:  # the legacy torch.nn.utils.weight_norm cannot be deep-copied
        hooked = [
            f"{name or '<root>'!r} ({kind})"
            for name, m in model.named_modules()
            if (kind := parametrized(m)) is not None and kind.startswith("legacy")
        ]
        if not hooked:
            raise
        raise GradientFlowError(
            f"{fn}(): cannot copy the model: layer {', '.join(hooked)} uses the legacy "
            "hook-based weight parametrization, which torch cannot deep-copy; parametrized "
            "weights are not supported (torch.nn.utils.remove_weight_norm removes it)"
        ) from exc


def parametrized(module: nn.Module) -> str | None:
    """How ``module``'s own weights are computed from other tensors, or None when they are
    plain parameters: ``"torch.nn.utils.parametrize"`` (``parametrizations.weight_norm``,
    ``spectral_norm``, ``orthogonal``...), ``"legacy weight_norm"``, ``"legacy spectral_norm"``.
    Re-drawing such a ``weight`` is lost at the next forward, or does not keep the
    parametrization's meaning, so the re-initialising transforms refuse these layers.

    >>> from torch.nn.utils import parametrizations
    >>> parametrized(parametrizations.weight_norm(nn.Linear(2, 2))), parametrized(nn.Linear(2, 2))
    ('torch.nn.utils.parametrize', None)
    """
    if parametrize.is_parametrized(module):
        return "torch.nn.utils.parametrize"
    for hook in module._forward_pre_hooks.values():
        name = type(hook).__name__
        if name in ("WeightNorm", "SpectralNorm"):
            return "legacy " + {"WeightNorm": "weight_norm", "SpectralNorm": "spectral_norm"}[name]
    return None


_REMOVE = {
    "torch.nn.utils.parametrize": "torch.nn.utils.parametrize.remove_parametrizations",
    "legacy weight_norm": "torch.nn.utils.remove_weight_norm",
    "legacy spectral_norm": "torch.nn.utils.remove_spectral_norm",
}


def refuse_parametrized(layers: Iterable[tuple[str, nn.Module]], fn: str) -> None:
    """Raise a GradientFlowError naming the first of ``layers`` whose weights are
    :func:`parametrized`: the transform ``fn`` would re-initialise it."""
    for name, module in layers:
        kind = parametrized(module)
        if kind is not None:
            raise GradientFlowError(
                f"{fn}(): layer {name!r} ({type(module).__name__}) has parametrized weights "
                f"({kind}); re-initialising parametrized weights is not supported: remove the "
                f"parametrization first ({_REMOVE[kind]}), or leave the layer out"
            )


def matching(new: nn.Module, like: nn.Module) -> nn.Module:
    """``new`` (a module a transform adds) on the device and in the floating dtype of
    ``like``'s first floating parameter, so that a float64 or half-precision model keeps
    one dtype (a new BatchNorm or PReLU is made in float32 on the CPU).

    >>> m = matching(nn.BatchNorm1d(3), nn.Linear(2, 3).double())
    >>> m.weight.dtype
    torch.float64
    """
    ref = next((p for p in like.parameters() if p.is_floating_point()), None)
    return new if ref is None else new.to(device=ref.device, dtype=ref.dtype)


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every submodule without children, in registration order.

    A module registered at several places (one ``nn.Sigmoid()`` used after every layer) is
    listed at each of them, unlike ``named_modules()``, which gives only its first place.

    >>> act = nn.Sigmoid()
    >>> [name for name, _ in leaves(nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act))]
    ['0', '1', '2', '3']
    """
    found: list[tuple[str, nn.Module]] = []

    def walk(module: nn.Module, prefix: str, above: tuple[int, ...]) -> None:
        for name, child in module._modules.items():
            if child is None or id(child) in above:  # a module that contains itself
                continue
            path = f"{prefix}.{name}" if prefix else name
            # a parametrized layer's only children are its parametrizations: a leaf still
            if any(c is not None for c in child._modules.values()) and not (
                parametrize.is_parametrized(child)
            ):
                walk(child, path, (*above, id(child)))
            else:
                found.append((path, child))

    walk(model, "", (id(model),))
    return found


def inherit(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` (made by a transform to stand in for, or next to, ``old``) with ``old``'s
    train/eval flag, and frozen when ``old`` has parameters and all of them are frozen.

    >>> old = nn.Linear(2, 2).eval().requires_grad_(False)
    >>> new = inherit(nn.Linear(2, 2), old)
    >>> new.training, new.weight.requires_grad
    (False, False)
    """
    new.train(old.training)
    params = list(old.parameters())
    if params and not any(p.requires_grad for p in params):
        new.requires_grad_(False)
    return new


def weight_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) of every Linear/Conv layer, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            yield name, module


def tied_to_other_modules(model: nn.Module) -> set[int]:
    """ids of the parameters that a module other than a Linear/Conv/RNN layer owns too (an
    output layer whose weight is the embedding's, ``dec.weight = emb.weight``): the
    re-initialising transforms leave them alone, so the embedding keeps its values.

    >>> emb, dec = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    >>> dec.weight = emb.weight
    >>> tied_to_other_modules(nn.Sequential(emb, dec)) == {id(emb.weight)}
    True
    """
    return {
        id(p)
        for m in model.modules()
        if not isinstance(m, (*WEIGHT_LAYERS, nn.RNNBase))
        for p in m.parameters(recurse=False)
    }


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at the dotted ``path`` (e.g. ``"encoder.0"``) with ``new``."""
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def out_features(module: nn.Module) -> int:
    """Output width (features or channels) of a Linear/Conv layer."""
    if isinstance(module, nn.Linear | nn.Bilinear):
        return module.out_features
    return int(module.out_channels)  # type: ignore[arg-type]


def functional_activations(model: nn.Module) -> list[str]:
    """Where ``model``'s own forward code calls an activation as a function.

    Module swaps cannot reach ``F.relu(x)`` or ``torch.sigmoid(x)`` written inside a
    ``forward``; this finds them by reading the source of every forward defined outside torch,
    and returns ``"module 'name' (Class.forward, file:line): text"`` strings.
    """
    seen: set[type] = set()
    found: list[str] = []
    for name, module in model.named_modules():
        cls = type(module)
        if cls in seen or cls.__module__.startswith("torch."):
            continue
        seen.add(cls)
        try:
            lines, start = inspect.getsourcelines(cls.forward)
            path = inspect.getsourcefile(cls.forward) or "?"
        except (OSError, TypeError):
            continue
        for offset, line in enumerate(lines):
            code = line.split("#", 1)[0]
            if _FUNCTIONAL_RE.search(code):
                where = f"{cls.__name__}.forward, {path}:{start + offset}"
                found.append(f"module {name or '<root>'!r} ({where}): {code.strip()}")
    return found


def _where(node: Any) -> str:
    """The innermost frame outside torch of the forward that created an autograd node."""
    frames = node.metadata.get("traceback_", []) if hasattr(node, "metadata") else []
    mine = [f.strip().splitlines()[0] for f in frames if f"{os.sep}torch{os.sep}" not in f]
    if not mine:
        return "location unknown"
    match = re.match(r'File "(.*)", line (\d+), in (.*)', mine[-1])
    return f"{match[1]}:{match[2]} (in {match[3]})" if match else mine[-1]


def graph_activations(model: nn.Module, example_input: Any) -> list[str]:
    """Activations in one forward's autograd graph that no activation *module* produced.

    Catches what reading ``forward`` source misses (helper functions, lambdas). The forward
    runs once under anomaly mode, which records where each node was created; the buffers
    (BatchNorm running statistics), train/eval flags and random state are restored afterwards.
    ``example_input`` is passed as preflight passes it: a tuple or list as positional
    arguments, a dict as keyword arguments, anything else as the one argument.
    """
    from gradientflow.preflight.measure import _forward, untouched

    produced: set[int] = set()

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            produced.add(id(out.grad_fn))

    handles = [m.register_forward_hook(hook) for m in model.modules() if activation_kind(m)]
    try:
        with untouched(model), torch.autograd.set_detect_anomaly(True, check_nan=False):
            out = _forward(model, example_input)
            roots: list[Any] = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
            found = []
            seen: set[int] = set()
            while roots:
                node = roots.pop()
                if node is None or id(node) in seen:
                    continue
                seen.add(id(node))
                kind = activation_of_node(node)
                if kind and id(node) not in produced:
                    found.append(f"{kind} at {_where(node)}")
                roots.extend(fn for fn, _ in node.next_functions)
    finally:
        for h in handles:
            h.remove()
    return sorted(set(found))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []
