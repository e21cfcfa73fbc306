"""Issue 14's cases as regression tests: real short trainings (the zoo's builders, each on 3
seeds) that train well must get no warning, the broken ones the right verdict.

Each test item trains one seed (under 20 s on one thread; BERT-12 is marked slow); the
assertions hold on every seed, with margins where the rule compares a number to a threshold.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow.diagnosis.rules import stagnation, through_time, vanishing
from gradientflow.diagnosis.rules.exploding import DEPTH_WARNING, _depth
from gradientflow.trace import Trace

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.zoo import CASES, Run  # noqa: E402
from benchmarks.zoo.cases_sequence import gan_2d  # noqa: E402

from tests.realtrain import threads  # noqa: E402

SEEDS = [0, 1, 2]


def _run(name: str, seed: int) -> Run:
    torch.set_num_threads(threads(1))
    case = next(c for c in CASES if c.name == name)
    return case.run(seed)


def _alarms(trace: Trace) -> list[tuple[str, str]]:
    d = gradientflow.diagnose(trace)
    return [(f.kind, f.severity) for f in d.at_least("warning")]


def _healthy(name: str, seed: int) -> tuple[Run, gradientflow.Diagnosis]:
    run = _run(name, seed)
    assert run.verified, run.check  # the outcome shows it trained well
    d = gradientflow.diagnose(run.trace)
    assert d.verdict == "healthy", _alarms(run.trace)
    return run, d


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_resnet18_bn_he_is_healthy(seed: int) -> None:
    run, _ = _healthy("resnet18_digits", seed)
    # read past the BatchNorms dL/ds grows 4.2x on the zoo seed (raw: 17x), under the 10x
    depth = _depth(run.trace)
    assert depth is None or depth["first_to_last"] < DEPTH_WARNING


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_post_ln_bert_12_no_vanishing(seed: int) -> None:
    run, d = _healthy("bert_tiny_12", seed)
    assert not d.of_kind("vanishing")
    # block to block along the 12 encoder layers: far from the 1/100 warning ratio
    for _label, rows in vanishing.windows(run.trace):
        ev = vanishing._evidence(run.trace, rows, vanishing.chain_layers(run.trace))
        assert ev is not None and ev["compared"] == "blocks" and ev["n_layers"] == 12
        assert ev["first_to_last"] > 10 * vanishing.WARNING_RATIO


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_selu_lecun_20_is_healthy(seed: int) -> None:
    _healthy("selu_lecun_20_digits", seed)


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_learned_lstm_adding_no_vanishing_through_time(seed: int) -> None:
    run, d = _healthy("lstm_adding_30", seed)
    assert not d.of_kind("vanishing_through_time")
    # the latest sample reaches the whole sequence
    latest = through_time.horizon_stats(run.trace.extras, "rnn", last=1)
    assert latest.censored and latest.first_over_last > 10 * through_time.HORIZON_RATIO


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_converged_regression_no_stagnation_warning(seed: int) -> None:
    _, d = _healthy("regression_converged", seed)
    assert all(f.severity == "info" for f in d.of_kind("stagnation"))


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_gan_discriminator_declared_with_watch_gets_no_stagnation_warning(seed: int) -> None:
    # The watched discriminator's loss rises or settles at log 4 = 1.386, the equilibrium where
    # it cannot tell real from fake - the same number a classifier stuck at chance shows, so
    # only the role declared with watch(disc, opt, role="discriminator") tells them apart.
    run, d = _healthy("gan_2d_gaussian", seed)  # the averaged generator fits the data
    assert run.trace.meta["role"] == "discriminator"
    [f] = d.of_kind("stagnation")
    assert f.severity == "info" and f.evidence["role"] == "discriminator"
    # the same run undeclared: only a loss that rose beyond its noise is still info
    meta = {k: v for k, v in run.trace.meta.items() if k != "role"}
    undeclared = gradientflow.diagnose(dataclasses.replace(run.trace, meta=meta))
    for f in undeclared.of_kind("stagnation"):
        ev = f.evidence
        rose = ev["total_improvement"] < -stagnation.RISING * ev["noise_margin"]
        assert (f.severity == "info") == rose


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_gan_generator_declared_with_watch_gets_no_stagnation_warning(seed: int) -> None:
    # The same GAN watching its generator: the non-saturating loss -log D(G(z)) falls a few
    # percent and settles near log 2 = 0.693 as the discriminator keeps up - a plateau "while
    # still high" for a loss expected to fall (undeclared: a warning on seeds 1 and 2).
    torch.set_num_threads(threads(1))
    run = gan_2d(seed, watched="generator")
    assert run.verified, run.check
    assert run.trace.meta["role"] == "generator"
    d = gradientflow.diagnose(run.trace)
    assert d.verdict == "healthy", _alarms(run.trace)
    loss = run.trace.scalars["loss"]
    assert abs(float(np.median(loss[-100:])) - np.log(2)) < 0.1 * np.log(2)  # settled at log 2


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_nan_from_step_0_is_critical_nonfinite_only(seed: int) -> None:
    run = _run("nonfinite_nan_from_start", seed)
    d = gradientflow.diagnose(run.trace)
    [f] = d.of_kind("nonfinite")
    assert f.severity == "critical" and f.evidence["first_step"] == 0
    assert not d.of_kind("weights_to_zero") and not d.of_kind("dead_units")
    assert d.verdict == "unhealthy"


def test_failed_recording_is_unknown() -> None:
    # a complex parameter: the monitor cannot measure it and says so in meta
    torch.manual_seed(0)
    m = nn.Linear(3, 2, dtype=torch.complex64)
    opt = torch.optim.SGD(m.parameters(), 0.1)
    with gradientflow.watch(m, opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            loss = m(torch.randn(4, 3, dtype=torch.complex64)).abs().sum()
            loss.backward()
            mon.log(loss=loss)
            opt.step()
    trace = mon.trace
    assert trace.meta["recording_error"]
    d = gradientflow.diagnose(trace)
    assert d.verdict == "unknown" and not d.healthy
    assert d.reason is not None and "recording failed" in d.reason
    assert d.to_dict()["verdict"] == "unknown"


def test_overflowing_norm_is_not_nonfinite() -> None:
    # every gradient entry is 1e20 (finite in float32); the norm over 64 entries is 8e20, above
    # the 1.8e19 where a float32 sum of squares overflows
    m = nn.Linear(8, 8, bias=False)
    opt = torch.optim.SGD(m.parameters(), 0.0)
    with gradientflow.watch(m, opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            loss = (m(torch.ones(1, 8)) * 1e20).sum()
            loss.backward()
            mon.log(loss=float(loss.detach()))
            opt.step()
    g = mon.trace.metrics["grad_norm"][:, 0]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, 8e20, rtol=1e-5)  # sqrt(64) * 1e20 by hand
    d = gradientflow.diagnose(mon.trace)
    assert not d.of_kind("nonfinite")
