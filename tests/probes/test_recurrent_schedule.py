"""Which steps the through-time probe replays: every full step by default (DEFAULT_EVERY),
whatever the schedule; ``every=`` chooses a sparser sampling, the first full step included."""

from __future__ import annotations

import torch
from torch import nn

import gradientflow
from gradientflow import Schedule
from gradientflow.probes.recurrent import DEFAULT_EVERY, RecurrentProbe, recurrent_probes


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def _replayed(steps: int, every: int | None = None, **options: object) -> list[int]:
    """The steps replayed over ``steps`` training steps (``every``: the probes' own)."""
    torch.manual_seed(0)
    net = _Net()
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    if every is not None:
        options["probes"] = recurrent_probes(net, every=every)
    x = torch.randn(3, 5, 2)
    with gradientflow.watch(net, opt, **options) as mon:  # type: ignore[arg-type]
        for _ in range(steps):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    steps_key = "bptt/lstm/steps"
    return list(mon.trace.extras[steps_key].tolist()) if steps_key in mon.trace.extras else []


def test_the_default_is_every_full_step() -> None:
    assert DEFAULT_EVERY == 1
    [probe] = recurrent_probes(_Net())
    assert probe.every == DEFAULT_EVERY
    assert RecurrentProbe(nn.GRU(2, 3), "gru").every == DEFAULT_EVERY


def test_the_default_schedule_replays_every_full_step() -> None:
    assert _replayed(201) == [0, 50, 100, 150, 200]


def test_everything_replays_every_step() -> None:
    assert _replayed(9, schedule=Schedule.everything()) == list(range(9))


def test_every_4_replays_every_fourth_full_step() -> None:
    # full steps: 0, 3, 6, ...
    assert _replayed(25, every=4, schedule=Schedule(full_every=3)) == [0, 12, 24]


def test_steps_that_are_not_full_do_not_count() -> None:
    net = _Net()
    [probe] = recurrent_probes(net, every=2)
    probe.attach()
    replayed = []
    try:
        for step, full in enumerate([True, False, False, True, False, True, True, True]):
            net.zero_grad()
            net(torch.randn(3, 5, 2)).sum().backward()
            probe.on_step(step, full)
            replayed = probe.extras()["bptt/lstm/steps"].tolist()
    finally:
        probe.detach()
    assert replayed == [0, 5, 7]  # full steps 0, 3, 5, 6, 7: the 1st, 3rd and 5th
