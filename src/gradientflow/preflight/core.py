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


def _jacobian(model: nn.Module, example_input: Any, limit: int) -> dict[str, Any] | None:
    try:
        return jacobian_spread(model, example_input, limit)
    except Exception:  # an extra: a model that cannot take one example alone goes without
        return None


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
      ``seed``): the gains between layers do not depend on it.
    * ``jacobian``: the input–output Jacobian of the first example is computed by default when
      its output has at most 16 numbers; ``True`` raises that to 256, ``False`` skips it.

    Nothing of the model changes: no ``.grad`` is written, buffers, train/eval flags and the
    RNG state are restored. An error in the model's own forward or in ``loss_fn`` becomes a
    :class:`GradientFlowError` naming it.
    """
    if not isinstance(model, nn.Module):
        raise GradientFlowError(
            f"preflight(): `model` must be an nn.Module, got {type(model).__name__}"
        )
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
    infos = [recurrent_info(name, module, out) for name, module, out in m.recurrent]
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
    )
