"""Inputs preflight refuses by name before any forward pass, and recurrent layers it reads
(a PackedSequence, an LSTM with projections) against their weights by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from gradientflow.errors import GradientFlowError
from gradientflow.preflight import preflight


class _Counted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"loss_fn": 3}, "`loss_fn`"),
        ({"seed": "a"}, "`seed`"),
        ({"jacobian": "no"}, "`jacobian`"),
        ({"target": torch.tensor([0, 1, 0, 1])}, "`target`"),
        ({"example_input": torch.randn(0, 8)}, "empty batch"),
        ({"example_input": (torch.randn(0, 8),)}, "empty batch"),
    ],
)
def test_bad_arguments_are_named_before_any_forward_pass(
    kwargs: dict[str, Any], named: str
) -> None:
    model = _Counted()
    args = {"example_input": torch.randn(4, 8), **kwargs}
    with pytest.raises(GradientFlowError, match=named):
        preflight(model, **args)
    assert model.calls == 0


def _gate_radii(w: torch.Tensor, gates: int, proj: torch.Tensor | None = None) -> float:
    blocks = [b.double() for b in w.detach().chunk(gates)]
    if proj is not None:  # h_t = W_hr h̃_t: one turn of the loop is W_hr W_h·
        blocks = [proj.detach().double() @ b for b in blocks]
    return max(float(torch.linalg.eigvals(b).abs().max()) for b in blocks)


def test_packed_sequence_gru_is_read() -> None:
    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.out = nn.GRU(4, 8, batch_first=True), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            return self.out(self.rnn(packed)[1][-1])

    torch.manual_seed(0)
    model = Packed()
    pf = preflight(model, (torch.randn(3, 6, 4), torch.tensor([6, 4, 2])))
    (info,) = pf.recurrent
    assert info["kind"] == "GRU" and info["steps"] == 6 and info["hidden"] == 8
    assert info["w_hh_radius"] == pytest.approx(_gate_radii(model.rnn.weight_hh_l0, 3))


def test_lstm_with_projections_is_read_through_its_projection() -> None:
    class Proj(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 16, proj_size=8, batch_first=True)
            self.out = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    model = Proj()
    pf = preflight(model, torch.randn(3, 6, 4))
    (info,) = pf.recurrent
    assert info["steps"] == 6 and info["hidden"] == 16
    expected = _gate_radii(model.rnn.weight_hh_l0, 4, model.rnn.weight_hr_l0)
    assert info["w_hh_radius"] == pytest.approx(expected, rel=1e-9)
