"""Small real trainings for the integration tests: each returns a recipe dict (seeded).

Digits (8x8 images, 64 features) and MNIST-1D (length 40) come from ``gradientflow.lab``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradientflow.demo import mlp
from gradientflow.lab import datasets


def _recipe(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: datasets.Dataset,
    epochs: int = 5,
    batch: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    # full batches only: a ragged last batch of 3 samples makes BatchNorm's gradient spike
    # (a real effect the exploding rule reports; these recipes are meant to be clean)
    full = datasets.batches(
        data.x_train, data.y_train, batch_size=batch, epochs=epochs, seed=seed, drop_last=True
    )
    return {"model": model, "optimizer": opt, "loss_fn": nn.CrossEntropyLoss(), "batches": full}


def sigmoid_demo(lr: float = 0.05, depth: int = 20) -> dict[str, Any]:
    """The demo: 20-layer sigmoid MLP, default init, SGD momentum 0.9, digits."""
    model = mlp(depth=depth, activation=nn.Sigmoid)
    return _recipe(
        model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), datasets.digits()
    )


def tanh_small_init(depth: int = 10) -> dict[str, Any]:
    """tanh MLP with N(0, 0.01^2) weights on MNIST-1D."""
    data = datasets.mnist1d()
    model = mlp(depth=depth, activation=nn.Tanh, n_in=40)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return _recipe(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), data)


def relu_scaled(scale: float = 3.0, depth: int = 20, lr: float = 1e-3) -> dict[str, Any]:
    """ReLU MLP, PyTorch default init with every weight multiplied by ``scale``, digits."""
    model = mlp(depth=depth, activation=nn.ReLU)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)
    return _recipe(model, torch.optim.SGD(model.parameters(), lr=lr), datasets.digits())


class FunctionalReLU(nn.Module):
    """An MLP whose ReLUs are ``F.relu`` calls in ``forward`` (no nn.ReLU modules)."""

    def __init__(self, depth: int = 6, width: int = 64) -> None:
        super().__init__()
        sizes = [64] + [width] * (depth - 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.head(x)


def relu_dead(functional: bool = False, depth: int = 6) -> dict[str, Any]:
    """ReLU MLP (He init) whose hidden biases are all -5: most units never fire."""
    torch.manual_seed(0)
    model: nn.Module = FunctionalReLU(depth) if functional else mlp(depth, activation=nn.ReLU)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in linears:
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    for m in linears[:-1]:
        nn.init.constant_(m.bias, -5.0)
    return _recipe(
        model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), datasets.digits()
    )


def relu_he_bn(depth: int = 10, width: int = 64, seed: int = 0) -> dict[str, Any]:
    """10-layer ReLU MLP, He init, BatchNorm after every hidden Linear, digits."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    n_in = 64
    for _ in range(depth - 1):
        lin = nn.Linear(n_in, width)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        layers += [lin, nn.BatchNorm1d(width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return _recipe(model, opt, datasets.digits(), seed=seed)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class ResCNN(nn.Module):
    """A small residual CNN for 8x8 digits: stem, 3 residual blocks, global pool, head."""

    def __init__(self, c: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(blocks)])
        self.head = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x.view(-1, 1, 8, 8))))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)))


def residual_cnn(seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = ResCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return _recipe(model, opt, datasets.digits(), seed=seed)


class SeqTransformer(nn.Module):
    """nn.TransformerEncoder over MNIST-1D as a sequence of 40 scalars (mean-pooled)."""

    def __init__(self, d: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(1, d)
        self.pos = nn.Parameter(torch.randn(40, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.unsqueeze(-1)) + self.pos
        return self.head(self.encoder(h).mean(dim=1))


def transformer(seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = SeqTransformer()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _recipe(model, opt, datasets.mnist1d(), seed=seed)


def sigmoid_frozen_lower() -> dict[str, Any]:
    """The demo's sigmoid MLP with its lower 10 Linear layers frozen."""
    model = mlp(activation=nn.Sigmoid)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in linears[:10]:
        m.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    return _recipe(model, torch.optim.SGD(params, lr=0.05, momentum=0.9), datasets.digits())


def relu_lr(lr: float) -> dict[str, Any]:
    """6-layer ReLU MLP, He init, plain SGD at learning rate ``lr`` (10: blows up; 1e-7: stalls)."""
    torch.manual_seed(0)
    model = mlp(depth=6, activation=nn.ReLU)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return _recipe(model, torch.optim.SGD(model.parameters(), lr=lr), datasets.digits())
