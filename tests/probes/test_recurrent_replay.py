"""Per-time-step gradients of the replay against plain autograd on an explicitly unrolled loop.

The reference steps torch's own cells (nn.RNNCell / LSTMCell / GRUCell, weights copied from the
module) in a Python loop, keeps every h_t with ``retain_grad`` and back-propagates a nonlinear
loss; the probe sees only the fused module, its batch and the hooks' output gradients.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from gradientflow.probes.recurrent import recurrent_probes

CELLS = {nn.RNN: nn.RNNCell, nn.LSTM: nn.LSTMCell, nn.GRU: nn.GRUCell}
T, B, N_IN, H = 12, 5, 3, 6


def _cell(module: nn.Module, layer: int, suffix: str) -> nn.Module:
    n_in = module.input_size if layer == 0 else H * (2 if module.bidirectional else 1)
    cell = CELLS[type(module)](n_in, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(module, f"{name}_l{layer}{suffix}"))
    return cell


def _reference(module: nn.Module, x: Tensor, h0: Tensor, c0: Tensor | None):
    """Explicit loop: (output, h_n, c_n, h and c states per layer-direction, processing order)."""
    xs = x.transpose(0, 1) if module.batch_first else x
    dirs = 2 if module.bidirectional else 1
    layer_in, states, cells, h_last, c_last = xs, [], [], [], []
    for layer in range(module.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            cell = _cell(module, layer, "_reverse" if d else "")
            h, c, seq, cseq = h0[k], (None if c0 is None else c0[k]), [], []
            for t in reversed(range(T)) if d else range(T):
                if c is None:
                    h = cell(layer_in[t], h)
                else:
                    h, c = cell(layer_in[t], (h, c))
                    c.retain_grad()
                    cseq.append(c)
                h.retain_grad()
                seq.append(h)
            states.append(seq)
            cells.append(cseq)
            h_last.append(h)
            c_last.append(c)
            outs.append(torch.stack(seq[::-1] if d else seq))
        layer_in = torch.cat(outs, -1)
    out = layer_in.transpose(0, 1) if module.batch_first else layer_in
    c_n = torch.stack(c_last) if c0 is not None else None
    return out, torch.stack(h_last), c_n, states, cells


def _loss(out: Tensor, h_n: Tensor, c_n: Tensor | None, readout: Tensor) -> Tensor:
    loss = torch.tanh(out @ readout).pow(2).mean() + h_n.sum().pow(2) / 100
    return loss if c_n is None else loss + c_n[-1].sin().sum()


def _per_step(chains: list[list[Tensor]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """‖grad‖ of every retained state, and ‖u·∂s_T/∂s_t‖ with u along the last state's grad.

    All ``.grad`` are read before the first ``autograd.grad`` call, which would add to them.
    """
    norms = [np.array([s.grad.norm().item() for s in seq]) for seq in chains]
    units = [seq[-1].grad / seq[-1].grad.norm() for seq in chains]
    gains = []
    for seq, u in zip(chains, units, strict=True):
        g = torch.autograd.grad(seq[-1], seq[:-1], u, retain_graph=True)
        gains.append(np.array([v.norm().item() for v in g] + [1.0]))
    return norms, gains


CASES = [(k, n, bf, False) for k, n, bf in itertools.product(CELLS, (1, 2), (False, True))]
CASES += [(nn.LSTM, 2, True, True), (nn.GRU, 1, False, True)]


@pytest.mark.parametrize(("kind", "layers", "batch_first", "bidir"), CASES)
def test_probe_matches_unrolled_autograd(kind, layers, batch_first, bidir) -> None:
    torch.manual_seed(1)
    module = kind(N_IN, H, num_layers=layers, batch_first=batch_first, bidirectional=bidir)
    module = module.double()
    dirs = 2 if bidir else 1
    x = torch.randn((B, T, N_IN) if batch_first else (T, B, N_IN), dtype=torch.double)
    h0 = torch.randn(layers * dirs, B, H, dtype=torch.double) * 0.5
    c0 = torch.randn_like(h0) if kind is nn.LSTM else None
    readout = torch.randn(H * dirs, 4, dtype=torch.double)

    # the reference: plain autograd on an explicitly unrolled loop
    out, h_n, c_n, states, cells = _reference(module, x, h0, c0)
    _loss(out, h_n, c_n, readout).backward(retain_graph=True)
    n = len(states)
    norms, gains = _per_step(states + (cells if kind is nn.LSTM else []))
    ref_dl, ref_gain, ref_dc, ref_gain_c = norms[:n], gains[:n], norms[n:], gains[n:]

    # the probe, on the fused module during a normal training step
    [probe] = recurrent_probes(nn.ModuleDict({"rnn": module}))
    probe.attach()
    y, state = module(x, (h0, c0) if c0 is not None else h0)
    h_n2, c_n2 = state if isinstance(state, tuple) else (state, None)
    assert torch.allclose(y, out)
    _loss(y, h_n2, c_n2, readout).backward()
    probe.on_step(3, True)
    probe.detach()
    ex = probe.extras()
    names = [f"rnn.l{k}" if layers > 1 else "rnn" for k in range(layers)]
    if bidir:
        names = [n + d for n in names for d in ("", ".reverse")]
    for k, name in enumerate(names):
        np.testing.assert_allclose(ex[f"bptt/{name}/dl_dh"][0], ref_dl[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ex[f"bptt/{name}/gain"][0], ref_gain[k], rtol=1e-9, atol=1e-12)
        if kind is nn.LSTM:
            np.testing.assert_allclose(ex[f"bptt/{name}/dl_dc"][0], ref_dc[k], rtol=1e-9)
            np.testing.assert_allclose(ex[f"bptt/{name}/gain_c"][0], ref_gain_c[k], rtol=1e-9)
        else:
            assert f"bptt/{name}/gain_c" not in ex
        assert ex[f"bptt/{name}/steps"].tolist() == [3]
    # the total gradient is more than the direct output path: the recurrence adds to it
    assert ref_dl[0][0] > 0


class SigmoidCell(nn.Module):
    """A user's own cell: h' = sigmoid(W x + U h + b)."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return torch.sigmoid(self.inp(x) + self.rec(h))


def test_user_cell_in_python_loop_matches_autograd() -> None:
    torch.manual_seed(2)
    model = nn.ModuleDict({"cell": SigmoidCell(N_IN, H), "head": nn.Linear(H, 1)}).double()
    [probe] = recurrent_probes(model, cells=[model["cell"]])
    probe.attach()
    seen = []
    model["head"].register_forward_hook(lambda m, a, o: seen.append(1))  # user's own hook
    x = torch.randn(T, B, N_IN, dtype=torch.double)
    for trial in range(2):  # the second forward pass is the one recorded
        h = torch.zeros(B, H, dtype=torch.double)
        hs, loss = [], torch.zeros((), dtype=torch.double)
        for t in range(T):
            h = model["cell"](x[t] * (trial + 1), h)
            h.retain_grad()
            hs.append(h)
            loss = loss + model["head"](h).pow(2).mean() * (t % 3 == 0)
        loss.backward()
    probe.on_step(0, True)
    probe.detach()
    ex = probe.extras()
    ref = np.array([h.grad.norm().item() for h in hs])
    np.testing.assert_allclose(ex["bptt/cell/dl_dh"][0], ref, rtol=1e-12)
    assert ex["bptt/cell/kind"].tolist() == ["cell"]
    assert len(seen) == 2 * T  # the replay did not fire the user's hooks
    gain = ex["bptt/cell/gain"][0]
    assert gain[-1] == 1.0 and np.all(gain[:-1] < 1.0)


def test_lstm_cell_tuple_state() -> None:
    torch.manual_seed(3)
    cell = nn.LSTMCell(N_IN, H).double()
    [probe] = recurrent_probes(nn.ModuleDict({"lstm_cell": cell}))
    probe.attach()
    x = torch.randn(T, B, N_IN, dtype=torch.double)
    state, hs, cs = None, [], []
    for t in range(T):
        h, c = cell(x[t]) if state is None else cell(x[t], state)
        h.retain_grad()
        c.retain_grad()
        hs.append(h)
        cs.append(c)
        state = (h, c)
    (hs[-1].sum() + c.pow(2).sum()).backward()
    probe.on_step(0, True)
    probe.detach()
    ex = probe.extras()
    ref = np.array([h.grad.norm().item() for h in hs])
    np.testing.assert_allclose(ex["bptt/lstm_cell/dl_dh"][0], ref, rtol=1e-12)
    ref_c = np.array([c.grad.norm().item() for c in cs])
    np.testing.assert_allclose(ex["bptt/lstm_cell/dl_dc"][0], ref_c, rtol=1e-12)
    gain_c = ex["bptt/lstm_cell/gain_c"][0]
    assert gain_c[-1] == 1.0 and np.all(np.isfinite(gain_c))


def test_bad_input_is_refused_or_skipped() -> None:
    from gradientflow.errors import GradientFlowError, GradientFlowWarning

    model = nn.ModuleDict({"lstm": nn.LSTM(N_IN, 300)})
    with pytest.raises(GradientFlowError, match=r"'lstm'.*hidden size 300"):
        recurrent_probes(model, gain="spectral")
    with pytest.raises(GradientFlowError, match="gain must be one of"):
        recurrent_probes(model, gain="exact")
    with pytest.raises(GradientFlowError, match="not a submodule"):
        recurrent_probes(model, cells=[nn.GRUCell(2, 2)])
    # a PackedSequence is skipped with one warning, never an exception in the training loop
    [probe] = recurrent_probes(model)
    probe.attach()
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(T, B, N_IN), [T] * B)
    with pytest.warns(GradientFlowWarning, match="PackedSequence"):
        out, _ = model["lstm"](packed)
    out.data.sum().backward()
    probe.on_step(0, True)
    probe.detach()
    assert probe.extras() == {}
    # no-grad forward passes (evaluation) are ignored
    with torch.no_grad():
        model["lstm"](torch.randn(T, B, N_IN))
    assert probe.measure() == []
