"""Per-time-step gradients of a recurrent layer, from a replay through an unrolled copy.

Given a recurrent module, the batch it read, its initial state and the gradient of the loss
with respect to its outputs (captured by tensor hooks during the real backward pass), the
replay rebuilds every hidden state h_t with the same weights (:func:`unroll`) and measures,
for every time step t of every layer and direction:

* ``dl_dh[t]`` = ‖∂L/∂h_t‖, the **total** gradient: through the recurrence, the layer above
  and the direct output path together. The loss enters only through the module's outputs, so
  L' = Σ <∂L/∂out, out> has the same first derivatives as L and autograd on the replay gives
  them exactly. Norm over the whole batch (Frobenius over samples and units).
* ``gain[t]`` = ‖u · ∂h_T/∂h_t‖, the chain-rule gain through time alone, with u the unit vector
  along ∂L/∂h_T (``gain="vjp"``, the default: one extra backward pass; ``gain[T] = 1``). It is
  a lower bound of the spectral norm ‖∂h_T/∂h_t‖₂, so it obeys every upper bound the spectral
  norm obeys. ``gain="spectral"`` computes that norm exactly (the largest over the batch of the
  per-sample Jacobians' largest singular value): H backward passes, for hidden sizes ≤ 256.

For an LSTM the same two numbers are also measured for the cell state c_t (``dl_dc``,
``gain_c``): the constant error carousel c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t is where an LSTM
keeps its memory, and the path that Hochreiter & Schmidhuber designed to carry the error.

Arrays are in processing order: the last entry is the last step the layer read (for the
reverse direction of a bidirectional layer, that is the first input).

>>> rnn = torch.nn.RNN(2, 8)
>>> x = torch.randn(30, 4, 2)
>>> y, h_n = rnn(x)
>>> loss_grad = torch.zeros_like(y); loss_grad[-1] = 1.0   # loss = y[-1].sum()
>>> [r] = through_time(rnn, x, grad_output=loss_grad, name="rnn")
>>> r.dl_dh.shape, float(r.gain[-1])
((30,), 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradientflow.errors import GradientFlowError
from gradientflow.probes.recurrent_unroll import hidden_size, module_kind, unroll

GAIN_MODES = ("vjp", "spectral", "none")
MAX_SPECTRAL_HIDDEN = 256


@dataclass
class TimeGrads:
    """Per-time-step norms of one layer (one direction) on one batch, processing order."""

    name: str
    kind: str
    dl_dh: np.ndarray  # (T,)
    gain: np.ndarray  # (T,)
    dl_dc: np.ndarray | None = None  # (T,) LSTM only: ‖∂L/∂c_t‖ of the cell state
    gain_c: np.ndarray | None = None  # (T,) LSTM only: ‖v·∂c_T/∂c_t‖, v along ∂L/∂c_T


def layer_names(base: str, module: nn.Module) -> list[str]:
    """Names of the layer-directions of ``module``: ``base``, ``base.reverse``, ``base.l1``, ...

    >>> layer_names("enc", torch.nn.LSTM(2, 3, num_layers=2, bidirectional=True))
    ['enc.l0', 'enc.l0.reverse', 'enc.l1', 'enc.l1.reverse']
    """
    dirs = ["", ".reverse"] if getattr(module, "bidirectional", False) else [""]
    n = int(getattr(module, "num_layers", 1))
    if n == 1:
        return [base + d for d in dirs]
    return [f"{base}.l{k}{d}" for k in range(n) for d in dirs]


def check_gain_mode(gain: str, module: nn.Module, name: str, hidden: int) -> None:
    """Raise GradientFlowError for an unknown mode or a too wide layer for ``spectral``."""
    if gain not in GAIN_MODES:
        raise GradientFlowError(f"recurrent probe {name!r}: gain must be one of {GAIN_MODES}")
    if gain == "spectral" and hidden > MAX_SPECTRAL_HIDDEN:
        raise GradientFlowError(
            f"recurrent probe {name!r} ({type(module).__name__}): gain='spectral' needs one "
            f"backward pass per hidden unit; hidden size {hidden} > {MAX_SPECTRAL_HIDDEN}. "
            "Use gain='vjp'."
        )


def _norms(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    full = [torch.zeros_like(h) if g is None else g for g, h in zip(grads, like, strict=True)]
    return torch.linalg.vector_norm(torch.stack(full).flatten(1).double(), dim=1)


def gain_curve(
    states: Sequence[Tensor], last_grad: Tensor | None = None, mode: str = "vjp"
) -> np.ndarray:
    """‖u·∂h_T/∂h_t‖ (``vjp``) or max-over-batch ‖∂h_T/∂h_t‖₂ (``spectral``) for every t.

    ``states`` are the hidden states h_0..h_T of one chain, each (B, H), all in one autograd
    graph (h_T last). ``last_grad`` gives the direction u (∂L/∂h_T); a fixed random unit vector
    is used when it is missing or zero. Entry T is 1.

    >>> h0 = torch.zeros(1, 2, requires_grad=True)
    >>> h1 = 0.5 * h0
    >>> hs = [h0, h1, 0.5 * h1]
    >>> gain_curve(hs, mode="spectral").tolist()
    [0.25, 0.5, 1.0]
    """
    h_last, earlier = states[-1], list(states[:-1])
    if mode == "none":
        return np.full(len(states), np.nan)
    if mode == "spectral":
        return _spectral(h_last, earlier)
    u = None if last_grad is None else last_grad.detach().to(h_last.dtype)
    if u is not None and not bool(torch.isfinite(u).all()):
        return np.full(len(states), np.nan)
    if u is None or float(u.norm()) == 0.0:
        gen = torch.Generator().manual_seed(0)
        u = torch.randn(h_last.shape, generator=gen).to(h_last)
    u = u / u.norm()
    if not earlier:
        return np.ones(1)
    grads = torch.autograd.grad(h_last, earlier, u, retain_graph=True, allow_unused=True)
    out = _norms(grads, earlier).cpu().numpy()
    return np.append(out, 1.0)


def _spectral(h_last: Tensor, earlier: list[Tensor]) -> np.ndarray:
    b, h = h_last.reshape(-1, h_last.shape[-1]).shape
    if not earlier:
        return np.ones(1)
    rows = []
    for i in range(h):
        e = torch.zeros_like(h_last)
        e[..., i] = 1.0
        g = torch.autograd.grad(h_last, earlier, e, retain_graph=True, allow_unused=True)
        full = [torch.zeros_like(s) if x is None else x for x, s in zip(g, earlier, strict=True)]
        rows.append(torch.stack(full).reshape(len(earlier), b, h))
    jac = torch.stack(rows, dim=2).double()  # (T, B, i, :) = d h_T[b, i] / d h_t[b, :]
    top = torch.linalg.matrix_norm(jac, ord=2).amax(dim=1)
    return np.append(top.cpu().numpy(), 1.0)


def _surrogate(outs: Sequence[Tensor | None], grads: Sequence[Tensor | None], where: str) -> Tensor:
    """Σ <g, out>: the loss, linearised; same first derivatives as the real loss."""
    total: Tensor | None = None
    for out, g in zip(outs, grads, strict=True):
        if out is None or g is None:
            continue
        if g.shape != out.shape:
            raise GradientFlowError(
                f"through_time({where}): gradient of shape {tuple(g.shape)} does not match the "
                f"output's {tuple(out.shape)}"
            )
        term = (out * g.detach().to(out)).sum()
        total = term if total is None else total + term
    if total is None:
        raise GradientFlowError(f"through_time({where}): no gradient of the loss was given")
    return total


def through_time(
    module: nn.RNNBase,
    input: Tensor,
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
    grad_output: Tensor | None = None,
    grad_hn: Tensor | None = None,
    grad_cn: Tensor | None = None,
    *,
    name: str = "rnn",
    gain: str = "vjp",
) -> list[TimeGrads]:
    """Per-time-step ‖∂L/∂h_t‖ and gain of every layer-direction of an RNN/LSTM/GRU.

    ``grad_output``, ``grad_hn`` and ``grad_cn`` are ∂L/∂ of the module's outputs
    ``(output, h_n[, c_n])``; give those the loss depends on.

    >>> gru = torch.nn.GRU(3, 4, num_layers=2, batch_first=True)
    >>> res = through_time(gru, torch.randn(5, 9, 3), grad_hn=torch.ones(2, 5, 4), name="gru")
    >>> [r.name for r in res], res[0].dl_dh.shape
    (['gru.l0', 'gru.l1'], (9,))
    """
    kind = module_kind(module)
    check_gain_mode(gain, module, name, hidden_size(module))
    with torch.enable_grad():
        u = unroll(module, input, hx)
        s = _surrogate([u.output, u.h_n, u.c_n], [grad_output, grad_hn, grad_cn], name)
        chains = u.states + [c for c in u.cells if c]
        flat = [h for seq in chains for h in seq]
        grads = torch.autograd.grad(s, flat, retain_graph=True, allow_unused=True)
        curves, pos = [], 0
        for seq in chains:
            g = grads[pos : pos + len(seq)]
            pos += len(seq)
            curves.append((_norms(g, seq).cpu().numpy(), gain_curve(seq, g[-1], gain)))
    names = layer_names(name, module)
    out = [TimeGrads(n, kind, *curves[k]) for k, n in enumerate(names)]
    for k, c_curves in enumerate(curves[len(names) :]):
        out[k].dl_dc, out[k].gain_c = c_curves
    return out


# ---------------------------------------------------------------------------- user cells
def first_tensor(x: Any) -> Tensor | None:
    """The hidden state in a cell's state or output: the tensor itself, or a tuple's first."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, tuple | list) and x and isinstance(x[0], Tensor):
        return x[0]
    return None


def _detached(x: Any, grad: bool = False) -> Any:
    if isinstance(x, Tensor):
        d = x.detach()
        return d.clone().requires_grad_(True) if grad and d.is_floating_point() else d
    if isinstance(x, tuple | list):
        return type(x)(_detached(v, grad) for v in x)
    return x


@contextmanager
def silenced(module: nn.Module) -> Iterator[None]:
    """Module hooks of ``module`` and its children switched off (for a replay nobody records)."""
    names = [n for n in vars(nn.Module()) if n.endswith("_hooks") and "state_dict" not in n]
    saved = [(m, n, getattr(m, n)) for m in module.modules() for n in names if hasattr(m, n)]
    try:
        for m, n, v in saved:
            object.__setattr__(m, n, type(v)())
        yield
    finally:
        for m, n, v in saved:
            object.__setattr__(m, n, v)


Call = tuple[tuple[Any, ...], dict[str, Any]]


def state_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The state a cell was called with: positional argument 1, else keyword ``hx``."""
    return args[1] if len(args) >= 2 else kwargs.get("hx")


def _with_state(args: tuple[Any, ...], kwargs: dict[str, Any], state: Any) -> Call:
    if len(args) >= 2:
        return (args[0], state, *args[2:]), kwargs
    if "hx" in kwargs:
        return args, {**kwargs, "hx": state}
    return (args if state is None else (*args, state)), kwargs


def unroll_cell(
    cell: Callable[..., Any], calls: Sequence[Call], state0: Any = None
) -> tuple[list[Tensor], list[Tensor]]:
    """Replay a cell's calls ``cell(x_t, state)``, chaining states.

    Returns h_0..h_{T-1} and, when the cell returns a tuple ``(h, c, ...)``, c_0..c_{T-1}
    (else an empty list). ``calls`` are the positional and keyword arguments of each call (the
    state argument is replaced: position 1, or keyword ``hx``). The first output is detached and
    made a leaf that requires grad, so all later states are in one graph with it.

    >>> lin = torch.nn.Linear(3, 3)
    >>> cell = lambda x, h: torch.tanh(lin(h) + x)
    >>> hs, cs = unroll_cell(cell, [((torch.randn(2, 3),), {})] * 4, torch.zeros(2, 3))
    >>> len(hs), hs[0].is_leaf, hs[-1].requires_grad, cs
    (4, True, True, [])
    """
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    state = state0
    with torch.enable_grad():
        for t, (args, kwargs) in enumerate(calls):
            a, kw = _with_state(args, kwargs, state)
            out = cell(*a, **kw)
            if t == 0:
                out = _detached(out, grad=True)
            h = first_tensor(out)
            if h is None:
                raise GradientFlowError("unroll_cell: the cell returned no tensor state")
            hs.append(h)
            if isinstance(out, tuple | list) and len(out) > 1 and isinstance(out[1], Tensor):
                cs.append(out[1])
            state = out
    return hs, cs
