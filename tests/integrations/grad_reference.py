"""Independent references for the integration tests: per-layer gradient norms from ``p.grad``.

The monitor's layers are modules that own parameters directly; a parameter tied to an earlier
layer counts there only. The references here take the layer names from the recorded Trace and
compute each layer's norm from its parameters' ``.grad`` in float64, one parameter at a time,
without any of the monitor's code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def layer_params(model: nn.Module, names: list[str]) -> list[list[nn.Parameter]]:
    """Each named layer's own parameters, a tied parameter counted in its first layer only."""
    modules = dict(model.named_modules())
    seen: set[int] = set()
    out = []
    for name in names:
        module = modules.get(name, model)  # the root module is named by its type
        params = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in params)
        out.append(params)
    return out


def norms_now(groups: list[list[nn.Parameter]]) -> np.ndarray:
    """Per-layer L2 norm of the gradients present now (NaN for a layer without any)."""
    out = []
    for params in groups:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            out.append(float("nan"))
            continue
        total = sum(float(torch.linalg.vector_norm(g.double())) ** 2 for g in grads)
        out.append(total**0.5)
    return np.array(out)


class GradSnapshots:
    """Keeps the latest per-parameter gradient norms (all parameters, by id) when asked."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.latest: dict[int, float] = {}
        self.steps: list[dict[int, float]] = []

    def snap(self) -> None:
        """Note every gradient's norm now (after a backward, before any clipping)."""
        self.latest = {
            id(p): float(torch.linalg.vector_norm(p.grad.double()))
            for p in self.model.parameters()
            if p.grad is not None
        }

    def close_step(self) -> None:
        """The optimizer is about to step: the latest snapshot is this step's reference."""
        self.steps.append(self.latest)

    def per_layer(self, names: list[str]) -> np.ndarray:
        """(steps, layers) reference norms for the Trace's layers."""
        groups = layer_params(self.model, names)
        rows = []
        for snap in self.steps:
            row = []
            for params in groups:
                sq = [snap[id(p)] ** 2 for p in params if id(p) in snap]
                row.append(sum(sq) ** 0.5 if sq else float("nan"))
            rows.append(row)
        return np.array(rows)


def assert_matches(recorded: np.ndarray, reference: np.ndarray, rtol: float = 1e-5) -> None:
    """Same shape, every finite value within ``rtol``, NaN exactly where the reference is NaN,
    and each step closer to its own reference than to its neighbours' (no shift by a step)."""
    assert recorded.shape == reference.shape, (recorded.shape, reference.shape)
    np.testing.assert_array_equal(np.isnan(recorded), np.isnan(reference))
    np.testing.assert_allclose(recorded, reference, rtol=rtol, equal_nan=True)
    if len(reference) > 1:
        shifted = np.nanmax(np.abs(recorded[1:] / reference[:-1] - 1))
        assert shifted > 10 * rtol, "the recorded norms equal the previous step's"
