"""An explicitly unrolled copy of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` that shares the weights.

The fused kernels (cuDNN, the CPU ``_VF`` ops) hand autograd one node for the whole sequence,
so the hidden state of step t is never a tensor one can ask about. :func:`unroll` recomputes
the module's forward pass step by step in plain tensor ops, with the module's own parameters,
and keeps every hidden state h_t of every layer and direction. Its outputs equal the module's
(tested to float precision); gradients with respect to each h_t are then plain autograd.

Inter-layer dropout (``dropout > 0`` in training mode) is not replayed: the unrolled copy is the
network without it.

>>> import torch
>>> rnn = torch.nn.GRU(3, 5, num_layers=2, batch_first=True)
>>> x = torch.randn(4, 7, 3)
>>> u = unroll(rnn, x)
>>> y, h_n = rnn(x)
>>> bool(torch.allclose(u.output, y, atol=1e-6)), len(u.states), len(u.states[0])
(True, 2, 7)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradientflow.errors import GradientFlowError

RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)

State = tuple[Tensor, Tensor | None]  # (h, c); c is None except for LSTM
Step = Callable[[Tensor, State], State]


@dataclass
class Unrolled:
    """The unrolled forward pass, time-major.

    ``states[k]`` is the list of the T hidden states of layer-direction ``k`` (order:
    layer 0 forward, layer 0 reverse, layer 1 forward, ...), **in processing order**: for a
    reverse direction, ``states[k][0]`` is the state after reading the last input.
    ``cells[k]`` holds the LSTM cell states c_t the same way (empty lists for RNN and GRU).
    ``names[k]`` is ``"l0"``, ``"l0.reverse"``, ... ; ``h0`` are the initial-state leaves.
    """

    output: Tensor  # (T, B, D * H_out), in the module's layout (batch-first if it is)
    h_n: Tensor  # (L * D, B, H_out)
    c_n: Tensor | None  # (L * D, B, H) for LSTM
    states: list[list[Tensor]]
    cells: list[list[Tensor]]
    names: list[str]
    h0: list[Tensor]


def module_kind(module: nn.Module) -> str:
    """``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"`` (the names torch uses)."""
    if isinstance(module, nn.LSTM):
        return "LSTM"
    if isinstance(module, nn.GRU):
        return "GRU"
    if isinstance(module, nn.RNN):
        return "RNN_TANH" if module.nonlinearity == "tanh" else "RNN_RELU"
    raise GradientFlowError(f"unroll: {type(module).__name__} is not an nn.RNN, nn.LSTM or nn.GRU")


def _weights(module: nn.RNNBase, layer: int, suffix: str) -> list[Tensor | None]:
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
    return [getattr(module, f"{n}_l{layer}{suffix}", None) for n in names]


def _step_fn(kind: str, w: list[Tensor | None]) -> Step:
    """The one-step update of layer ``w`` = (W_ih, W_hh, b_ih, b_hh, W_hr)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    assert w_ih is not None and w_hh is not None

    def rnn(x: Tensor, s: State) -> State:
        z = F.linear(x, w_ih, b_ih) + F.linear(s[0], w_hh, b_hh)
        return (torch.tanh(z) if kind == "RNN_TANH" else torch.relu(z)), None

    def lstm(x: Tensor, s: State) -> State:
        assert s[1] is not None
        gates = F.linear(x, w_ih, b_ih) + F.linear(s[0], w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h if w_hr is None else F.linear(h, w_hr)), c

    def gru(x: Tensor, s: State) -> State:
        gi = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
        gh = F.linear(s[0], w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(gi[0] + gh[0])
        z = torch.sigmoid(gi[1] + gh[1])
        n = torch.tanh(gi[2] + r * gh[2])
        return (1 - z) * n + z * s[0], None

    return {"LSTM": lstm, "GRU": gru}.get(kind, rnn)


def hidden_size(module: nn.RNNBase) -> int:
    """Size of the hidden state h (the projection size for an LSTM with ``proj_size``)."""
    return int(module.proj_size or module.hidden_size)


def _initial(
    module: nn.RNNBase, hx: Tensor | tuple[Tensor, Tensor] | None, batch: int, like: Tensor
) -> tuple[Tensor, Tensor | None]:
    """(h0, c0) of shape (L * D, B, ·), detached copies that require grad."""
    n = module.num_layers * (2 if module.bidirectional else 1)
    h_in, c_in = hx if isinstance(hx, tuple) else (hx, None)
    h0 = like.new_zeros(n, batch, hidden_size(module)) if h_in is None else h_in.detach().clone()
    c0 = None
    if isinstance(module, nn.LSTM):
        c0 = like.new_zeros(n, batch, module.hidden_size) if c_in is None else c_in.detach().clone()
        c0.requires_grad_(True)
    return h0.requires_grad_(True), c0


def unroll(
    module: nn.RNNBase, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
) -> Unrolled:
    """Run ``module`` on ``input`` step by step, keeping every hidden state.

    ``input`` and ``hx`` are what the module was called with (batched or not, batch-first if
    the module is). The initial state is replaced by a detached copy that requires grad, so every
    h_t is part of an autograd graph even when nothing else requires grad.

    >>> lstm = torch.nn.LSTM(2, 4, bidirectional=True)
    >>> u = unroll(lstm, torch.randn(6, 3, 2))
    >>> u.names, tuple(u.output.shape), tuple(u.c_n.shape)
    (['l0', 'l0.reverse'], (6, 3, 8), (2, 3, 4))
    """
    kind = module_kind(module)
    if not isinstance(input, Tensor):
        raise GradientFlowError(
            f"unroll: {type(module).__name__} input must be a Tensor, got {type(input).__name__}"
            " (PackedSequence is not supported)"
        )
    unbatched = input.dim() == 2
    x = input.unsqueeze(1) if unbatched else input
    if module.batch_first and not unbatched:
        x = x.transpose(0, 1)
    if unbatched:
        if isinstance(hx, tuple):
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        elif hx is not None:
            hx = hx.unsqueeze(1)
    h0, c0 = _initial(module, hx, x.shape[1], x)
    dirs = 2 if module.bidirectional else 1
    states: list[list[Tensor]] = []
    cells: list[list[Tensor]] = []
    names: list[str] = []
    layer_in = x
    for layer in range(module.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            step = _step_fn(kind, _weights(module, layer, "_reverse" if d else ""))
            hs, cs = _run(step, layer_in, (h0[k], None if c0 is None else c0[k]), bool(d))
            states.append(hs)
            cells.append(cs)
            names.append(f"l{layer}" + (".reverse" if d else ""))
            outs.append(torch.stack(hs[::-1] if d else hs))
        layer_in = torch.cat(outs, dim=-1) if dirs == 2 else outs[0]
    output = layer_in
    if module.batch_first and not unbatched:
        output = output.transpose(0, 1)
    h_n = torch.stack([hs[-1] for hs in states])
    c_n = torch.stack([cs[-1] for cs in cells]) if c0 is not None else None
    if unbatched:
        output, h_n = output.squeeze(1), h_n.squeeze(1)
        c_n = None if c_n is None else c_n.squeeze(1)
    return Unrolled(output, h_n, c_n, states, cells, names, [h0] if c0 is None else [h0, c0])


def _run(step: Step, xs: Tensor, s: State, reverse: bool) -> tuple[list[Tensor], list[Tensor]]:
    """One layer-direction over the sequence: its hidden states and (LSTM) cell states."""
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    for t in range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0]):
        s = step(xs[t], s)
        hs.append(s[0])
        if s[1] is not None:
            cs.append(s[1])
    return hs, cs
