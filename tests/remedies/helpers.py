"""Helpers shared by the remedy tests."""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, to check a transform left its input alone."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return set(state) == set(snap) and all(torch.equal(state[k], snap[k]) for k in snap)


def train_steps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 60, lr: float = 0.01
) -> tuple[float, float]:
    """(first loss, last loss) of a few full-batch Adam steps."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]
