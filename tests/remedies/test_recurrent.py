"""to_lstm / to_gru: sizes kept, the RNN interface kept, the cell state carried, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import LSTMAsRNN, to_gru, to_lstm
from tests.realtrain import SEEDS, perturbed
from tests.remedies.helpers import same, snapshot


class Unpacker(nn.Module):
    """A forward that unpacks ``(output, h)`` and reads ``h``: an LSTM's (h, c) would break it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(2, 3)
        self.rnn = nn.RNN(3, 8, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(self.embed(x))
        return self.head(h[-1]) + 0 * out[:, -1, :1]


def test_to_lstm_keeps_sizes_and_the_forward_works() -> None:
    model = Unpacker()
    snap = snapshot(model)
    new = to_lstm(model)
    assert same(model, snap) and isinstance(model.rnn, nn.RNN)
    lstm = new.rnn
    assert isinstance(lstm, LSTMAsRNN) and isinstance(lstm, nn.LSTM)
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.batch_first) == (3, 8, 2, True)
    assert lstm.dropout == 0.1
    assert torch.equal(new.embed.weight, model.embed.weight)
    assert torch.equal(new.head.weight, model.head.weight)
    assert new(torch.randn(4, 9, 2)).shape == (4, 1)
    # forget-gate bias 1 (gate order i, f, g, o)
    assert torch.all(lstm.bias_ih_l0[8:16] == 1) and torch.all(lstm.bias_hh_l0[8:16] == 0)


def test_lstm_carries_its_cell_state_when_h_is_fed_back() -> None:
    torch.manual_seed(0)
    lstm = to_lstm(nn.RNN(2, 5))
    ref = nn.LSTM(2, 5)
    ref.load_state_dict(lstm.state_dict())
    x1, x2 = torch.randn(6, 3, 2), torch.randn(4, 3, 2)
    out1, h = lstm(x1)
    out2, h2 = lstm(x2, h.detach())  # truncated BPTT: the hidden state is detached
    r1, (rh, rc) = ref(x1)
    r2, (rh2, _) = ref(x2, (rh, rc))
    assert torch.allclose(out1, r1) and torch.allclose(out2, r2) and torch.allclose(h2, rh2)
    # a fresh h (not the one returned) starts from a zero cell
    h0 = torch.zeros(1, 3, 5)
    out3, _ = lstm(x2, h0)
    r3, _ = ref(x2, (h0, torch.zeros_like(h0)))
    assert torch.allclose(out3, r3)


def test_to_gru_keeps_the_interface() -> None:
    model = Unpacker()
    new = to_gru(model)
    assert isinstance(new.rnn, nn.GRU) and new.rnn.num_layers == 2 and new.rnn.batch_first
    assert new(torch.randn(2, 5, 2)).shape == (2, 1)
    bare = to_gru(nn.RNN(3, 4, bidirectional=True))
    out, h = bare(torch.randn(7, 2, 3))
    assert out.shape == (7, 2, 8) and h.shape == (2, 2, 4)


@pytest.mark.parametrize("transform", [to_lstm, to_gru])
def test_the_new_layer_takes_the_mode_and_frozen_flag_of_the_rnn(transform: object) -> None:
    model = Unpacker().eval()  # an RNN with inter-layer dropout
    new = transform(model)  # type: ignore[operator]
    assert not new.rnn.training and new.rnn.weight_hh_l0.requires_grad
    x = torch.randn(3, 5, 2)
    assert torch.equal(new(x), new(x))  # no dropout in eval mode
    rnn = nn.RNN(4, 8).eval().requires_grad_(False)
    bare = transform(rnn)  # type: ignore[operator]
    assert not bare.training and not any(p.requires_grad for p in bare.parameters())


def test_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"has no nn.RNN layer \(it has LSTM already\)"):
        to_lstm(nn.Sequential(nn.LSTM(2, 2)))
    with pytest.raises(GradientFlowError, match=r"to_gru\(\): Linear has no nn.RNN"):
        to_gru(nn.Linear(2, 2))


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_lstm_model_trains_on_the_adding_problem_a_little(seed: int) -> None:
    from gradientflow.lab.tasks import fresh_batches

    torch.manual_seed(seed)
    model = perturbed(to_lstm(Unpacker()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for x, y in fresh_batches("adding", 64, 10, seed=seed, n=60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10, (seed, losses[:10], losses[-10:])
