"""The adding problem, LSTM against a tanh RNN at the same T, watched by the monitor (slow).

Hochreiter & Schmidhuber 1997 (exp. 4), in the variant of Arjovsky et al. 2016: predicting 1
gives MSE 1/6. At T = 100, with 32 hidden units, batch 32, Adam, gradient clipping at 1 and
fresh batches, an LSTM beats the baseline while a tanh RNN given the same steps stays at it.
Each model trains at its own best learning rate from the sweep {1e-3, 3e-3, 1e-2} (seed 0,
2000 steps, lowest validation MSE over checks every 250 steps): the RNN 0.1705, 0.1703, 0.1708
(never off the baseline; 3e-3 taken), the LSTM at 1e-2 0.0012 after 1250 steps. The monitor's
recurrent probe must say why: the RNN's gradient vanishes through time
(``vanishing_through_time``), the LSTM's decays more slowly with distance, and still the
LSTM's own gradient decays (the article's claim: LSTM slows the vanishing, it does not
abolish it).

Budget: the LSTM trains until its validation MSE is below 0.03 (checked every 250 steps, at
most ``MAX_STEPS``); the RNN then gets the same number of steps. Run on seeds 0, 1 and 2, each
a test of its own: the LSTM stopped after 1250, 1500 and 1000 steps (test MSE 0.0012, 0.0028,
0.0065), the RNN ended at 0.1615, 0.1637, 0.1608 with a horizon of 9-12 steps. Time: 83-149 s
a seed on one thread of a machine at load 14, where test_remedy_adding_slow takes 4.7x its
time at load 3: about 20-30 s a seed (the previous version, 128 hidden units and the RNN at
T = 200: 380 s). The tanh RNN costs more per step than the LSTM on CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradientflow
from gradientflow.diagnosis.horizon import horizon_stats
from gradientflow.lab.tasks import ADDING_BASELINE_MSE, eval_set, fresh_batches
from gradientflow.probes.recurrent import recurrent_probes
from gradientflow.schedule import Schedule
from gradientflow.trace import Trace
from tests.realtrain import SEEDS, perturbed, threads

T, HIDDEN, BATCH, CLIP = 100, 32, 32, 1.0
LR = {nn.LSTM: 1e-2, nn.RNN: 3e-3}  # each model's best of {1e-3, 3e-3, 1e-2} (seed 0)
MAX_STEPS = 3000  # the LSTM leaves the 1/6 plateau after 1000-2000 steps, depending on the seed
CHECK_EVERY = 250  # optimizer steps between validation checks
PROBE_EVERY = 50  # optimizer steps between probe replays (the rule reads the last 5)


class AddingNet(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(2, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _mse(net: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((net(data[0]) - data[1]).pow(2).mean())


def _train(
    cell: type[nn.Module], seed: int, steps: int, stop_below: float = 0.0
) -> tuple[float, int, Trace]:
    """Train at T; stop early once the validation MSE is below ``stop_below``.

    Returns (test MSE, steps taken, trace).
    """
    torch.manual_seed(seed)
    net = perturbed(AddingNet(cell))
    opt = torch.optim.Adam(net.parameters(), lr=LR[cell])
    validation = eval_set("adding", 1000, T, seed=777)
    schedule = Schedule(dense_steps=MAX_STEPS, full_every=PROBE_EVERY)
    taken = 0
    with gradientflow.watch(
        net, opt, probes=recurrent_probes(net, every=1), schedule=schedule
    ) as mon:
        for x, y in fresh_batches("adding", BATCH, T, seed=seed, n=steps):
            loss = (net(x) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            mon.log(loss=loss)
            nn.utils.clip_grad_norm_(net.parameters(), CLIP)
            opt.step()
            taken += 1
            if taken % CHECK_EVERY == 0 and _mse(net, validation) < stop_below:
                break
    return _mse(net, eval_set("adding", 2000, T)), taken, mon.trace


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_lstm_remembers_rnn_forgets(seed: int) -> None:
    torch.set_num_threads(threads(1))
    lstm_mse, budget, lstm_trace = _train(nn.LSTM, seed, MAX_STEPS, stop_below=0.03)
    rnn_mse, _, rnn_trace = _train(nn.RNN, seed, budget)  # the same T, the same budget

    assert lstm_mse < 0.05, (lstm_mse, budget)
    assert rnn_mse >= 0.15, rnn_mse  # no better than predicting 1 (MSE 1/6)
    assert ADDING_BASELINE_MSE > 0.15

    rnn_findings = gradientflow.diagnose(rnn_trace).of_kind("vanishing_through_time")
    assert [f.layers for f in rnn_findings] == [["rnn"]]
    ev = rnn_findings[0].evidence
    assert ev["seq_len"] == T and ev["horizon"] < T // 2 and ev["decay_factor"] < 1

    rnn = horizon_stats(rnn_trace.extras, "rnn")
    lstm = horizon_stats(lstm_trace.extras, "rnn")
    assert lstm.kind == "LSTM" and rnn.kind == "RNN_TANH"
    # the LSTM's gradient decays more slowly with distance (per step, seeds 0-2: 0.94, 0.89,
    # 0.78 against the RNN's 0.55, 0.57, 0.60); its horizon is longer or, when it stopped
    # early, about the same (seed 2: 13 against 12)
    assert lstm.decay_factor > rnn.decay_factor + 0.1
    assert lstm.horizon >= rnn.horizon - 2
    # ... and yet the LSTM's own gradient still decays with distance
    assert lstm.decay_factor < 1
    assert lstm.first_over_last < 1
    print(
        f"\nadding problem T={T}, seed {seed}, {budget} steps each: LSTM test MSE "
        f"{lstm_mse:.4f}, horizon {lstm.horizon}{'+' if lstm.censored else ''} of "
        f"{lstm.seq_len - 1}, decay {lstm.decay_factor:.4f}, first/last "
        f"{lstm.first_over_last:.3g}; tanh RNN test MSE {rnn_mse:.4f}, horizon {rnn.horizon}, "
        f"decay {rnn.decay_factor:.4f}"
    )
