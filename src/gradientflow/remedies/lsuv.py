"""``lsuv``: layer-sequential unit-variance init, from data (Mishkin & Matas 2016).

1. Every Linear/Conv weight is re-drawn as an orthonormal matrix (Saxe et al. 2014; for a
   conv, the ``out × (in·k…)`` reshaping), biases 0.
2. Layer by layer, in the order the forward pass reaches them, the weight is divided by the
   standard deviation of the layer's output on a batch, until that variance is within ``tol``
   of 1 (at most ``max_iter`` rounds).

The variance is taken per unit over the batch (per channel over batch and positions for a
conv) and averaged: the *centred* variance. A sigmoid's outputs share a large constant offset
(its mean 1/2) that carries no signal; scaling the signal part, not the offset, to 1 is what
makes the back-propagated gradient keep its size too, because to first order the same factor
``Var(φ(h))/Var(h) ≈ E[φ'(h)²]`` scales both.

>>> import torch
>>> from gradientflow.demo import mlp
>>> model = mlp(depth=6, width=32)
>>> batch = torch.randn(128, 64)
>>> new = lsuv(model, [(batch, None)])
>>> out = new[:9](batch)  # the output of the fifth Linear
>>> round(float(out.detach().var(dim=0).mean()), 1)
1.0
>>> torch.equal(model[0].weight, mlp(depth=6, width=32)[0].weight)  # the input is untouched
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.modules import (
    WEIGHT_LAYERS,
    clone,
    refuse_parametrized,
    tied_to_other_modules,
)
from gradientflow.remedies.remedy import Remedy

#: Stop scaling a layer when its output variance is within this of 1.
TOL = 0.05
#: Rounds per layer at most.
MAX_ITER = 10
#: Examples to measure on at least (several batches are concatenated when they are small).
MIN_EXAMPLES = 64


class _Stop(Exception):
    """Raised by the hook to end the forward pass once the layer's output is seen."""


def _inputs(batches: Iterable[Any]) -> Any:
    """The first batch's inputs, concatenated with the next ones up to MIN_EXAMPLES."""
    xs: list[Any] = []
    for batch in batches:
        x = batch[0] if isinstance(batch, tuple | list) else batch
        xs.append(x)
        if not isinstance(x, torch.Tensor) or sum(int(t.shape[0]) for t in xs) >= MIN_EXAMPLES:
            break
    if not xs:
        raise GradientFlowError("lsuv(): `batches` is empty")
    if any(isinstance(t, torch.Tensor) and (t.dim() == 0 or t.shape[0] == 0) for t in xs):
        raise GradientFlowError(
            "lsuv(): `batches` starts with an empty batch (no example to measure a variance on)"
        )
    if len(xs) > 1 and all(isinstance(t, torch.Tensor) for t in xs):
        return torch.cat(xs)
    return xs[0]


def _unit_variance(out: torch.Tensor) -> float:
    """Per-unit (per-channel) variance over the batch and positions, averaged."""
    flat = (
        out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
        if out.dim() > 2
        else (out.detach().double().T)
    )
    return float(flat.var(dim=1, unbiased=False).mean())


def _output_variance(model: nn.Module, layer: nn.Module, x: Any) -> float:
    from gradientflow.preflight.measure import _forward, untouched

    seen: list[float] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        seen.append(_unit_variance(output))
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        with untouched(model), torch.no_grad():
            _forward(model, x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not seen:
        raise GradientFlowError(f"lsuv(): layer {type(layer).__name__} was not reached")
    return seen[0]


def _forward_order(model: nn.Module, x: Any) -> list[tuple[str, nn.Module]]:
    from gradientflow.preflight.measure import _forward, untouched

    order: list[tuple[str, nn.Module]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if all(m is not module for _, m in order):
            order.append((names[id(module)], module))

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)
    ]
    try:
        with untouched(model), torch.no_grad():
            _forward(model, x)
    finally:
        for h in handles:
            h.remove()
    return order


def lsuv(
    model: nn.Module, batches: Iterable[Any], *, tol: float = TOL, max_iter: int = MAX_ITER
) -> nn.Module:
    """A copy of ``model`` with orthonormal weights scaled so each layer's output variance is 1.

    ``batches``: (inputs, targets) pairs or bare inputs, as a recipe's; the first batch (more
    if it holds fewer than 64 examples) is used. Layers never reached by the forward pass keep
    their orthonormal init. A layer whose weight is tied to an embedding keeps its values (it
    is neither re-drawn nor scaled). ``tol`` must be > 0 and ``max_iter`` >= 1.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise GradientFlowError(f"lsuv(): `max_iter` must be a whole number >= 1, got {max_iter!r}")
    if not isinstance(tol, int | float) or not math.isfinite(tol) or tol <= 0:
        raise GradientFlowError(f"lsuv(): `tol` must be a number > 0, got {tol!r}")
    new = clone(model, "lsuv")
    x = _inputs(batches)
    try:
        order = _forward_order(new, x)
    except Exception as exc:
        raise GradientFlowError(
            f"lsuv(): the forward pass raised {type(exc).__name__}: {exc}"
        ) from exc
    if not order:
        raise GradientFlowError(f"lsuv(): {type(model).__name__} has no Linear or Conv layer")
    refuse_parametrized(
        [(n, m) for n, m in new.named_modules() if isinstance(m, WEIGHT_LAYERS)], "lsuv"
    )
    keep = tied_to_other_modules(new)  # a decoder tied to the embedding keeps its weight
    order = [(name, layer) for name, layer in order if id(layer.weight) not in keep]
    with torch.no_grad():
        for layer in new.modules():  # reached by the forward or not
            if not isinstance(layer, WEIGHT_LAYERS) or id(layer.weight) in keep:
                continue
            nn.init.orthogonal_(layer.weight)  # type: ignore[arg-type]
            if isinstance(getattr(layer, "bias", None), torch.Tensor):
                layer.bias.zero_()  # type: ignore[operator]
        for _name, layer in order:
            for _ in range(max_iter):
                var = _output_variance(new, layer, x)
                if not var > 0 or abs(var - 1.0) < tol:
                    break
                layer.weight.div_(var**0.5)  # type: ignore[operator]
    return new


def _check(model: nn.Module) -> str | None:
    has = any(isinstance(m, WEIGHT_LAYERS) for m in model.modules())
    return None if has else "the model has no Linear or Conv layer"


#: The registry entry: ``reinit:lsuv``.
REMEDY = Remedy(
    name="reinit:lsuv",
    title="LSUV init",
    changes="Linear/Conv weights orthonormal, then scaled layer by layer so each output has "
    "unit variance on a batch; biases 0",
    transform=lsuv,
    needs_batches=True,
    check=_check,
)

REMEDIES: tuple[Remedy, ...] = (REMEDY,)
