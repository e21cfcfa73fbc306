"""Two more looks at init: the input–output Jacobian's singular values, and recurrent layers.

* :func:`jacobian_spread` — singular values of ``∂out[0]/∂x[0]`` for the first example of the
  batch (Pennington et al. 2017: dynamical isometry keeps them all near 1; a spread of many
  orders of magnitude means some directions of the input reach the output and others do not).
  Done only when the output of one example has at most ``max_outputs`` numbers (one batched
  backward pass per output number).
* :func:`recurrent_info` — for an RNN/LSTM/GRU: the spectral radius of ``W_hh`` and, for a
  vanilla RNN, of the mean recurrent Jacobian ``diag(E[φ'(h_t)]) W_hh`` on the probe (Pascanu
  et al. 2013), and the horizon it implies: the number of steps after which a gradient is
  multiplied by less than 1e-3.

>>> import torch
>>> from torch import nn
>>> rnn = nn.RNN(4, 32)
>>> out, _ = rnn(torch.randn(50, 8, 4))
>>> info = recurrent_info("rnn", rnn, out.detach())
>>> info["steps"], info["horizon"] is not None
(50, True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradientflow.preflight.measure import _forward, output_tensors, untouched

#: A gradient below this fraction counts as gone (as the diagnosis' horizon).
HORIZON_RATIO = 1e-3


def _float_input(example_input: Any) -> torch.Tensor | None:
    if isinstance(example_input, torch.Tensor) and example_input.is_floating_point():
        return example_input
    return None


def jacobian_spread(
    model: nn.Module, example_input: Any, max_outputs: int = 16
) -> dict[str, Any] | None:
    """Singular values of the first example's input–output Jacobian, or None when not cheap.

    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(3, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 4.0])))
    >>> jacobian_spread(lin, torch.randn(5, 3))["spread"]
    4.0
    """
    x = _float_input(example_input)
    if x is None or x.dim() < 1:
        return None
    coupled = any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()
    )
    # one example is enough unless a train-mode BatchNorm couples the batch's examples
    x = (x if coupled else x[:1]).detach().clone().requires_grad_(True)
    with untouched(model), torch.enable_grad():
        outs = output_tensors(_forward(model, x))
        if not outs or outs[0].dim() < 1 or outs[0].shape[0] != x.shape[0]:
            return None
        flat = outs[0].reshape(outs[0].shape[0], -1)[0]
        m = flat.numel()
        if m > max_outputs or min(m, x[0].numel()) < 2 or not flat.requires_grad:
            return None
        eye = torch.eye(m, dtype=flat.dtype, device=flat.device)
        try:
            rows = torch.autograd.grad(flat, x, grad_outputs=eye, is_grads_batched=True)[0]
        except RuntimeError:  # an op without a batching rule: one pass per row
            rows = torch.stack(
                [torch.autograd.grad(flat[i], x, retain_graph=True)[0] for i in range(m)]
            )
    jac = rows[:, 0].reshape(m, -1).double().cpu()
    s = torch.linalg.svdvals(jac)
    top, bottom = float(s.max()), float(s.min())
    return {
        "shape": [m, int(jac.shape[1])],
        "singular_values": [float(v) for v in s],
        "max": top,
        "min": bottom,
        "spread": top / bottom if bottom > 0 else float("inf"),
    }


def _horizon(rho: float) -> float:
    if not rho > 0:
        return 0.0
    if rho >= 1.0:
        return float("inf")
    return math.log(HORIZON_RATIO) / math.log(rho)


def recurrent_info(
    name: str, module: nn.Module, output: torch.Tensor, steps: int | None = None
) -> dict[str, Any]:
    """Spectral radii at init and the implied horizon of one recurrent layer (last layer).

    ``output`` is the layer's output sequence (for a PackedSequence, its ``.data``); ``steps``
    its length (read from ``output``'s shape when not given). With ``proj_size`` (an LSTM
    with projections) a gate's recurrent matrix is ``W_hr W_h·`` (proj_size × proj_size).
    """
    kind = type(module).__name__
    layers = int(getattr(module, "num_layers", 1))
    w = getattr(module, f"weight_hh_l{layers - 1}").detach().double().cpu()
    gates = {"LSTM": 4, "GRU": 3}.get(kind, 1)
    hidden = int(getattr(module, "hidden_size", w.shape[1]))
    proj = getattr(module, f"weight_hr_l{layers - 1}", None) if kind == "LSTM" else None
    blocks = list(w.chunk(gates))
    if isinstance(proj, torch.Tensor):  # h = W_hr (o ⊙ tanh c): the loop goes through W_hr
        w_hr = proj.detach().double().cpu()
        blocks = [w_hr @ b for b in blocks]
    radii = [float(torch.linalg.eigvals(b[:, : b.shape[0]]).abs().max()) for b in blocks]
    if steps is None:
        steps = int(output.shape[1] if getattr(module, "batch_first", False) else output.shape[0])
    info: dict[str, Any] = {
        "layer": name,
        "kind": kind,
        "steps": steps,
        "hidden": hidden,
        "w_hh_radius": max(radii),
        "jacobian_radius": None,
        "horizon": None,
    }
    if kind != "RNN" or getattr(module, "bidirectional", False):
        return info  # gated: the cell path carries memory; no single Jacobian to read
    h = output.double().cpu()[..., -hidden:].reshape(-1, hidden)
    slope = (h > 0).double() if module.nonlinearity == "relu" else 1.0 - h**2
    jac = slope.mean(0)[:, None] * w
    rho = float(torch.linalg.eigvals(jac).abs().max())
    info["jacobian_radius"] = rho
    info["horizon"] = _horizon(rho)
    return info
