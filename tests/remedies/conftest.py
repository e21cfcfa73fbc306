"""Fixtures for the remedy tests: a slice of scikit-learn's digits."""

from __future__ import annotations

import pytest
import torch

from tests.realtrain import threads


@pytest.fixture
def digits_small() -> tuple[torch.Tensor, torch.Tensor]:
    from gradientflow.lab import datasets

    data = datasets.digits()
    return data.x_train[:256], data.y_train[:256]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """These models are tiny: one thread is faster than two, and kinder to a shared machine."""
    torch.set_num_threads(threads(1))
