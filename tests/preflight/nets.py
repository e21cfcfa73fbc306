"""Random nets at a chosen init for the preflight tests (weights drawn here, seeded)."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


def stack(
    act: str,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    depth: int = 30,
    width: int = 256,
    seed: int = 0,
    uniform: bool = False,
) -> nn.Sequential:
    """``depth`` Linear layers of ``width``, Var(w) = σ_w²/fan_in, biases of variance σ_b²."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        lin = nn.Linear(width, width)
        std = math.sqrt(sigma_w2 / width)
        if uniform:
            nn.init.uniform_(lin.weight, -std * math.sqrt(3), std * math.sqrt(3))
        else:
            nn.init.normal_(lin.weight, 0.0, std)
        nn.init.normal_(lin.bias, 0.0, math.sqrt(sigma_b2)) if sigma_b2 else nn.init.zeros_(
            lin.bias
        )
        layers.append(lin)
        if i < depth - 1:
            layers.append(ACTS[act]())
    return nn.Sequential(*layers)


def probe(width: int = 256, batch: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, width, generator=torch.Generator().manual_seed(1000 + seed))


def conv_net(seed: int = 0, depth: int = 8, tiny: bool = False) -> nn.Sequential:
    """A plain CNN (Conv + ReLU, PyTorch's default init) on 3x8x8 inputs, 10 outputs."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def weight_grad_ratio(model: nn.Module, x: torch.Tensor, loss_fn=None, y=None) -> float:  # type: ignore[no-untyped-def]
    """‖∂L/∂W‖ of the first weight layer over the last one's, by plain autograd."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    out = model(x)
    if loss_fn is None:
        r = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
        loss = (out * r).sum()
    else:
        loss = loss_fn(out, y)
    g = torch.autograd.grad(loss, [weights[0], weights[-1]])
    return float(g[0].norm() / g[1].norm())
