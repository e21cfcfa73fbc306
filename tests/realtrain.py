"""Helpers for tests on real trainings: seeds, threads and a perturbed init.

A test on a real training must hold on any CPU, so it runs over :data:`SEEDS` (never chosen
for their outcome) and asserts on every seed or on the median, with margins. To check that no
test leans on a bit-exact trajectory, ``make test`` re-runs the real-training tests (marker
``training``) with another thread count and every initial weight moved by ``1e-6 * randn``:

* ``GRADIENTFLOW_PERTURB_INIT=1e-6``: :func:`perturbed` adds that much noise to a model's
  parameters (from its own generator, so the global random stream is left alone);
* ``GRADIENTFLOW_TEST_THREADS=2``: the torch thread count every test runs with
  (:func:`threads`; the default is one per xdist worker of two cores).

The module name is unique: the test folders share ``sys.path``.

>>> import os, torch
>>> os.environ.pop("GRADIENTFLOW_PERTURB_INIT", None) and None
>>> net = torch.nn.Linear(3, 2)
>>> before = net.weight.detach().clone()
>>> torch.equal(perturbed(net).weight, before)  # off by default
True
>>> os.environ["GRADIENTFLOW_PERTURB_INIT"] = "1e-6"
>>> moved = (perturbed(net).weight - before).abs().max().item()
>>> 0 < moved < 1e-5
True
>>> del os.environ["GRADIENTFLOW_PERTURB_INIT"]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

SEEDS = (0, 1, 2)  # every real-training test runs these; never picked for their outcome
PERTURB_ENV = "GRADIENTFLOW_PERTURB_INIT"
THREADS_ENV = "GRADIENTFLOW_TEST_THREADS"

M = TypeVar("M", bound=nn.Module)


def perturb_scale() -> float:
    """The init perturbation asked for in ``$GRADIENTFLOW_PERTURB_INIT`` (0 when unset)."""
    raw = os.environ.get(PERTURB_ENV, "").strip()
    return float(raw) if raw else 0.0


def perturbed(model: M) -> M:
    """``model`` with ``scale * randn`` added to every parameter in place (a no-op by default).

    The noise comes from a generator of its own, so the batches and later inits drawn from
    torch's global generator are the same with and without the perturbation.
    """
    scale = perturb_scale()
    if scale:
        g = torch.Generator().manual_seed(20_260_101)
        with torch.no_grad():
            for p in model.parameters():
                noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
                p.add_(scale * noise.to(p.dtype))
    return model


def perturbed_builder(build: Callable[[], M]) -> Callable[[], M]:
    """A builder whose models come out :func:`perturbed`."""
    return lambda: perturbed(build())


def threads(default: int) -> int:
    """The torch thread count for a test: ``$GRADIENTFLOW_TEST_THREADS``, else ``default``."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    return max(1, int(raw)) if raw else default


def median(values: Sequence[float]) -> float:
    """The median of per-seed results (a typed wrapper of :func:`statistics.median`)."""
    return float(statistics.median(values))
