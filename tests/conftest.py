"""Shared test set-up: seeded, $OMP_NUM_THREADS threads (else two cores shared by the xdist
workers), no display.

``GRADIENTFLOW_TEST_THREADS`` overrides the thread count and ``GRADIENTFLOW_PERTURB_INIT``
perturbs the initial weights of the real-training tests (see ``realtrain.py``; ``make test``
re-runs the tests marked ``training`` that way).
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

from tests.realtrain import threads


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    # OMP_NUM_THREADS=1 (as `make test` sets) means one: idle OpenMP threads spin on a busy CPU
    torch.set_num_threads(threads(int(omp) if omp else max(1, 2 // workers)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "training: trains a real model; must hold over seeds, thread counts and a 1e-6 "
        "perturbation of the initial weights (`make test-perturbed`)",
    )
