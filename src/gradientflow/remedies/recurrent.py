"""``to_lstm`` / ``to_gru``: replace vanilla ``nn.RNN`` layers by gated ones.

A vanilla RNN's gradient through time is a product of ``W_recᵀ diag(φ')`` factors and vanishes
when the largest singular value of ``W_rec`` is below 1/γ (Pascanu et al. 2013). The LSTM's
cell state is updated additively through a forget gate (Hochreiter & Schmidhuber 1997), a
path on which the error can flow for hundreds of steps; the GRU has a similar gated path.

The new layer keeps ``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``batch_first``,
``dropout`` and ``bidirectional``. An LSTM returns ``(output, (h, c))`` where the RNN returned
``(output, h)``: :class:`LSTMAsRNN` returns ``(output, h)`` like the RNN did and keeps ``c``
so that a forward that feeds ``h`` back in keeps working. A GRU already has the RNN's interface.
The LSTM's forget-gate bias starts at 1 (Gers et al. 2000).

>>> import torch
>>> from torch import nn
>>> rnn = nn.RNN(3, 8, num_layers=2, batch_first=True)
>>> lstm = to_lstm(rnn)
>>> out, h = lstm(torch.randn(5, 7, 3))
>>> tuple(out.shape), tuple(h.shape)
((5, 7, 8), (2, 5, 8))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.modules import clone, inherit, leaves, set_submodule
from gradientflow.remedies.remedy import Remedy


def _rnn_kwargs(rnn: nn.RNN) -> dict[str, Any]:
    if getattr(rnn, "proj_size", 0):
        raise GradientFlowError("to_lstm/to_gru: an nn.RNN with proj_size is not supported")
    return {
        "input_size": rnn.input_size,
        "hidden_size": rnn.hidden_size,
        "num_layers": rnn.num_layers,
        "bias": rnn.bias,
        "batch_first": rnn.batch_first,
        "dropout": float(rnn.dropout),
        "bidirectional": rnn.bidirectional,
    }


class LSTMAsRNN(nn.LSTM):
    """An LSTM with an RNN's interface: ``forward(x, h0=None) -> (output, h_n)``.

    The cell state ``c_n`` of the last call is kept in ``last_cell``; when the ``h0`` passed in
    is the ``h_n`` this layer returned last (or a ``.detach()`` of it), its cell state is
    carried on with it, otherwise the cell starts at zero. A tuple ``(h0, c0)`` is used as is.
    """

    last_cell: torch.Tensor | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_cell = None
        self._last_hidden_ptr: int | None = None

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state: tuple[torch.Tensor, torch.Tensor] | None
        if hx is None or isinstance(hx, tuple):
            state = hx
        else:
            cell = self.last_cell
            same = cell is not None and hx.data_ptr() == self._last_hidden_ptr
            if not same or cell is None or cell.shape != hx.shape:
                cell = torch.zeros_like(hx)
            elif not hx.requires_grad:
                cell = cell.detach()
            state = (hx, cell)
        output, (h_n, c_n) = super().forward(x, state)
        self.last_cell = c_n
        self._last_hidden_ptr = h_n.data_ptr()
        return output, h_n


def _w(rnn: nn.RNN) -> torch.Tensor:
    weight = rnn.weight_ih_l0
    assert isinstance(weight, torch.Tensor)
    return weight


def _replace(model: nn.Module, fn: str, make: Callable[..., nn.Module]) -> nn.Module:
    if isinstance(model, nn.RNN):  # the model is the RNN itself
        return _like(make, model)
    new = clone(model, fn)
    targets = [(n, m) for n, m in leaves(new) if isinstance(m, nn.RNN)]
    if not targets:
        kinds = sorted({type(m).__name__ for m in new.modules() if isinstance(m, nn.RNNBase)})
        also = f" (it has {', '.join(kinds)} already)" if kinds else ""
        raise GradientFlowError(f"{fn}(): {type(model).__name__} has no nn.RNN layer{also}")
    made: dict[int, nn.Module] = {}  # one new layer per old one: a shared one stays shared
    for name, rnn in targets:
        if id(rnn) not in made:
            made[id(rnn)] = _like(make, rnn)
        set_submodule(new, name, made[id(rnn)])
    return new


def _like(make: Callable[..., nn.Module], rnn: nn.RNN) -> nn.Module:
    """The new layer for ``rnn``: its sizes, device, dtype, train/eval flag and, when all its
    parameters are frozen, frozen too."""
    weight = _w(rnn)
    layer = make(**_rnn_kwargs(rnn)).to(device=weight.device, dtype=weight.dtype)
    return inherit(layer, rnn)


def _lstm(**kwargs: Any) -> nn.Module:
    layer = LSTMAsRNN(**kwargs)
    if layer.bias:
        with torch.no_grad():
            h = layer.hidden_size
            for name, param in layer.named_parameters():
                if name.startswith("bias_ih"):
                    param[h : 2 * h] = 1.0  # forget gate: remember by default
                elif name.startswith("bias_hh"):
                    param[h : 2 * h] = 0.0
    return layer


def to_lstm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.RNN`` replaced by an LSTM (RNN interface kept).

    >>> from torch import nn
    >>> type(to_lstm(nn.Sequential(nn.RNN(2, 4)))[0]).__name__
    'LSTMAsRNN'
    """
    return _replace(model, "to_lstm", _lstm)


def to_gru(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.RNN`` replaced by an ``nn.GRU`` of the same sizes.

    >>> from torch import nn
    >>> to_gru(nn.RNN(2, 4, batch_first=True)).batch_first
    True
    """
    return _replace(model, "to_gru", nn.GRU)


def applies(model: nn.Module) -> str | None:
    """None when ``model`` has a vanilla ``nn.RNN`` to replace, else the reason it has not.

    >>> applies(nn.LSTM(2, 4))
    'the model has no vanilla nn.RNN layer'
    """
    has = any(isinstance(m, nn.RNN) for m in model.modules())
    return None if has else "the model has no vanilla nn.RNN layer"


#: The remedies this file declares.
REMEDIES: tuple[Remedy, ...] = (
    Remedy(
        "to_lstm",
        "LSTM",
        "every nn.RNN becomes an LSTM of the same sizes (forget-gate bias 1), RNN interface kept",
        to_lstm,
        check=applies,
    ),
    Remedy("to_gru", "GRU", "every nn.RNN becomes a GRU of the same sizes", to_gru, check=applies),
)
