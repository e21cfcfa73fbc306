"""The helpers behind the perturbed re-run of the real-training tests (tests/realtrain.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.realtrain import PERTURB_ENV, THREADS_ENV, median, perturbed, perturbed_builder, threads


def test_perturbed_is_a_no_op_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PERTURB_ENV, raising=False)
    net = nn.Linear(4, 3)
    before = [p.detach().clone() for p in net.parameters()]
    assert perturbed(net) is net
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_perturbed_moves_every_parameter_by_the_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PERTURB_ENV, "1e-6")
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 10))
    before = [p.detach().clone() for p in net.parameters()]
    state = torch.get_rng_state()
    perturbed(net)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    for a, b in zip(before, net.parameters(), strict=True):
        moved = (b.detach() - a).double()
        assert moved.abs().max() > 0
        # float32 rounding blurs 1e-6 steps on weights of size ~0.1: within a factor 2
        assert 0.5e-6 < float(moved.std()) < 2e-6 or b.numel() < 100
    built = perturbed_builder(lambda: nn.Linear(2, 2))()
    assert isinstance(built, nn.Linear)


def test_threads_and_median(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert threads(1) == 1
    monkeypatch.setenv(THREADS_ENV, "2")
    assert threads(1) == 2
    assert median([0.3, 0.9, 0.5]) == 0.5
