"""The z-loss lab experiment (issue 17, experiment 2) on seeds 0, 1, 2, and its criterion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradientflow.lab.experiments import load, names
from gradientflow.lab.experiments import z_loss as exp
from gradientflow.lab.transformer_models import VOCAB


def test_listed() -> None:
    assert "z-loss" in names()
    assert load("z-loss") is exp.run


def _arm(lr: float, late: list[float]) -> dict[str, object]:
    return {"lr": lr, "late_max_abs": max(abs(v) for v in late)}


def test_criterion_can_fail() -> None:
    held = [_arm(0.03, [0.2, -0.1]), _arm(0.5, [0.9, -0.4])]
    assert all(c["passed"] for c in exp.log_z_held(held))
    # one sample past the bound at one learning rate fails it; lr 0.7 is not judged
    drifted = [_arm(0.03, [0.2, -0.1]), _arm(0.5, [0.2, -1.2])]
    assert [c["passed"] for c in exp.log_z_held(drifted)] == [True, False]
    assert len(exp.log_z_held([*held, _arm(0.7, [50.0])])) == 2


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quick_run_holds_on_every_seed(seed: int) -> None:
    torch.set_num_threads(1)  # about 10 s of CPU a seed
    r = exp.run(quick=True, seed=seed)
    assert r.passed, [c for c in r.checks if not c["passed"]]
    assert r.negative_control["fails"]
    m = r.measured
    # the plain model's log Z starts at ≈ log V (logits near 0) and is not pulled toward 0
    assert abs(m["log_z_start"] - np.log(VOCAB)) < 0.5
    assert m["log_z_end_plain"]["0.03"] > 4.0
    # z-loss ends near 0 at both rates; plain jumped by ≥ 10 at lr 0.5
    assert all(abs(v) < 0.5 for v in m["log_z_end_z_loss"].values())
    assert m["log_z_excursion_plain"]["0.5"] >= 10.0
    # same loss at the moderate rate (within 5%), for both arms a trained model (< log V)
    lo_p, lo_z = m["final_loss_plain"]["0.03"], m["final_loss_z_loss"]["0.03"]
    assert abs(lo_z - lo_p) <= 0.05 * lo_p and lo_p < 0.6 * np.log(VOCAB)
    assert not any("output_logit_divergence" in f for f in m["findings_z_loss"].values())
