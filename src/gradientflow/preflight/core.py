"""``preflight()``: measure, predict, lint, conclude.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
...                       nn.Linear(64, 4))
>>> pf = preflight(model, torch.randn(32, 16))
>>> pf.depth, pf.chi1 is not None, len(pf.layers[0].__dict__) > 5
(3, True, True)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.preflight.lint import lint
from gradientflow.preflight.measure import measure
from gradientflow.preflight.probes import jacobian_spread, recurrent_info
from gradientflow.preflight.result import Preflight
from gradientflow.preflight.verdict import (
    first_to_last,
    flow_findings,
    measured_chi1,
    nonfinite_findings,
    not_judged,
    predict,
)


def _batch_size(example_input: Any) -> int | None:
    shape = getattr(example_input, "shape", None)
    if shape:
        return int(shape[0])
    if isinstance(example_input, tuple | list) and example_input:
        return _batch_size(example_input[0])
    if isinstance(example_input, dict) and example_input:
        return _batch_size(next(iter(example_input.values())))
    return None


def _check_arguments(example_input: Any, loss_fn: Any, target: Any, seed: Any, jac: Any) -> None:
    """Refuse bad arguments before any forward pass, naming the argument."""
    if loss_fn is not None and not callable(loss_fn):
        raise GradientFlowError(
            f"preflight(): `loss_fn` must be callable(output[, target]), got "
            f"{type(loss_fn).__name__}"
        )
    if target is not None and loss_fn is None:
        raise GradientFlowError(
            "preflight(): `target` is given without `loss_fn`: the random output probe does not "
            "use a target; pass loss_fn too, or leave target out"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GradientFlowError(f"preflight(): `seed` must be an int, got {type(seed).__name__}")
    if jac is not None and not isinstance(jac, bool):
        raise GradientFlowError(
            f"preflight(): `jacobian` must be True, False or None, got {type(jac).__name__}"
        )
    if _batch_size(example_input) == 0:
        raise GradientFlowError(
            "preflight(): `example_input` is an empty batch (batch size 0): give at least one "
            "example"
        )


def _jacobian(model: nn.Module, example_input: Any, limit: int) -> dict[str, Any] | None:
    try:
        return jacobian_spread(model, example_input, limit)
    except Exception:  # an extra: a model that cannot take one example alone goes without
        return None


def _recurrent_infos(recurrent: list[tuple[str, nn.Module, Any, int]]) -> list[dict[str, Any]]:
    infos = []
    for name, module, out, steps in recurrent:
        try:
            infos.append(recurrent_info(name, module, out, steps))
        except Exception as exc:
            raise GradientFlowError(
                f"preflight(): reading the recurrent layer {name!r} ({type(module).__name__}) "
                f"raised {type(exc).__name__}: {exc}"
            ) from exc
    return infos


def preflight(
    model: nn.Module,
    example_input: Any,
    loss_fn: Any = None,
    target: Any = None,
    *,
    seed: int = 0,
    jacobian: bool | None = None,
) -> Preflight:
    """Look at ``model`` at init on ``example_input`` and say whether its gradients will flow.

    * ``example_input``: a batch as the model takes it (a tensor ``model(x)``, a tuple
      ``model(*x)`` or a dict ``model(**x)``); random data of the right shape and scale will do.
    * ``loss_fn(output, target)`` (or ``loss_fn(output)`` without ``target``): the loss to
      back-propagate. Without it the probe is ``Σ output · r`` with ``r ~ N(0, 1)`` (seeded by
      ``seed``): the gains between layers do not depend on it. ``target`` needs ``loss_fn``.
    * ``jacobian``: the input–output Jacobian of the first example is computed by default when
      its output has at most 16 numbers; ``True`` raises that to 256, ``False`` skips it.

    Nothing of the model changes: no ``.grad`` is written, buffers, train/eval flags and the
    RNG state are restored. An error in the model's own forward or in ``loss_fn`` becomes a
    :class:`GradientFlowError` naming it; a bad argument (or an empty batch) is refused, named,
    before any forward pass. With fewer than two weight layers measured (none recognised, or
    the gradient does not reach them) the verdict is ``"unknown"`` with its ``reason``.
    """
    if not isinstance(model, nn.Module):
        raise GradientFlowError(
            f"preflight(): `model` must be an nn.Module, got {type(model).__name__}"
        )
    _check_arguments(example_input, loss_fn, target, seed, jacobian)
    try:
        m = measure(model, example_input, loss_fn, target, seed)
    except GradientFlowError:
        raise
    except Exception as exc:
        raise GradientFlowError(
            f"preflight(): the forward/backward pass on example_input raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    jac = None if jacobian is False else _jacobian(model, example_input, 256 if jacobian else 16)
    infos = _recurrent_infos(m.recurrent)
    pred = predict(m.layers)
    findings = [
        *nonfinite_findings(m.layers, m.output_finite),
        *flow_findings(m.layers, pred),
        *lint(model, m.layers, infos, first_to_last(m.layers)),
    ]
    return Preflight(
        model=type(model).__name__,
        layers=m.layers,
        prediction=pred,
        measured_chi1=measured_chi1(m.layers),
        first_to_last=first_to_last(m.layers),
        findings=findings,
        jacobian=jac,
        recurrent=infos,
        batch=_batch_size(example_input),
        probe="random output probe" if loss_fn is None else "loss_fn",
        reason=not_judged(m.layers),
    )
