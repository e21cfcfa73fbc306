"""Shared timing code for the benchmarks: the models, a training step, interleaved rounds.

Every participant (a way of training: plain, watched by gradientflow, watched by a peer tool)
owns its own copy of the same model (same initial weights), optimizer and batch, and keeps its
watcher attached for the whole run. A round runs ``steps`` training steps of every participant,
one after the other, in an order that rotates from round to round; a participant's time for the
round is its mean seconds per step. Drift in the machine's speed (other processes, thermal
state) then hits all participants of a round alike, and the ratio of a participant to plain is
taken within each round, then summarised over rounds by its median and its range.

>>> import torch
>>> case = CASES["tiny_mlp"]
>>> p = Participant("plain", case, torch.device("cpu"))
>>> times = interleave([p], rounds=2, steps=2)
>>> len(times["plain"])
2
>>> ratio_stats([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])["median"]
2.0
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# A hook called once per step after ``backward()`` and before ``optimizer.step()``.
StepHook = Callable[[int, torch.Tensor], None]


# ---------------------------------------------------------------------------------- models
def mlp(depth: int = 16, width: int = 512) -> nn.Module:
    """``depth`` Linear layers of ``width`` with ReLU between them (the issue's 16x512 MLP)."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def cnn_bn() -> nn.Module:
    """Four 3x3 conv + BatchNorm + ReLU blocks, two poolings, a linear head (32x32 inputs)."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
    )  # fmt: skip


#: VGG-11's convolution widths ("M": a 2x2 max-pooling), as in Simonyan & Zisserman (2015)
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11(classes: int = 10) -> nn.Module:
    """VGG-11 (configuration A: 8 conv 3x3 + ReLU, 5 poolings) for 32x32 inputs, linear head."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG11:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
            c_in = int(v)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, classes))


class Encoder(nn.Module):
    """A small transformer encoder (pre-norm, GELU) over a sequence; mean-pooled linear head."""

    def __init__(self, d_model: int = 128, heads: int = 4, layers: int = 2, out: int = 10) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, heads, 4 * d_model, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class Lstm(nn.Module):
    """A 2-layer LSTM over a sequence; linear head on the last hidden state."""

    def __init__(self, d_in: int = 32, hidden: int = 128, out: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def deep(depth: int = 2000, width: int = 16) -> nn.Module:
    """A very deep, narrow tanh MLP: the per-layer cost of watching dominates here."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Case:
    """A model, a fixed batch shape and the number of classes of its cross-entropy target."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    classes: int

    def batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(self.input_shape, generator=g)
        y = torch.randint(0, self.classes, (self.input_shape[0],), generator=g)
        return x.to(device), y.to(device)


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("mlp16x512", mlp, (128, 512), 512),
        Case("cnn_bn", cnn_bn, (64, 3, 32, 32), 10),
        Case("transformer", Encoder, (32, 64, 128), 10),
        Case("lstm2", Lstm, (32, 50, 32), 10),
        Case("deep2000", deep, (16, 16), 16),
        Case("vgg11", vgg11, (16, 3, 32, 32), 10),
        Case("tiny_mlp", lambda: mlp(depth=3, width=8), (4, 8), 8),
    )
}


# ---------------------------------------------------------------------------------- timing
@dataclass
class Participant:
    """One way of training, on its own copy of the case's model (seeded: same weights)."""

    name: str
    case: Case
    device: torch.device
    model: nn.Module = field(init=False)
    opt: torch.optim.Optimizer = field(init=False)
    hook: StepHook | None = None
    close: Callable[[], None] | None = None
    step_count: int = 0

    def __post_init__(self) -> None:
        torch.manual_seed(0)
        self.model = self.case.build().to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.x, self.y = self.case.batch(self.device)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model

    def twin(self, name: str) -> Participant:
        """A participant with an identical fresh copy of the model (weights copied)."""
        other = Participant(name, self.case, self.device)
        other.model.load_state_dict(copy.deepcopy(self.model.state_dict()))
        return other

    def run(self, n: int, sync: Callable[[], None] | None = None) -> float:
        """Run ``n`` training steps; mean seconds per step (``sync`` before the clock stops)."""
        autocast = self.autocast()
        start = time.perf_counter()
        for _ in range(n):
            self.opt.zero_grad(set_to_none=True)
            with autocast:
                loss = nn.functional.cross_entropy(self.forward(self.x).float(), self.y)
            loss.backward()
            if self.hook is not None:
                self.hook(self.step_count, loss.detach())
            self.opt.step()
            self.step_count += 1
        if sync is not None:
            sync()
        return (time.perf_counter() - start) / n

    def autocast(self) -> Any:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


def interleave(
    participants: list[Participant],
    rounds: int,
    steps: int,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per step of each participant in each round, rounds interleaved and rotated."""
    times: dict[str, list[float]] = {p.name: [] for p in participants}
    n = len(participants)
    for r in range(rounds):
        for k in range(n):
            p = participants[(r + k) % n]
            times[p.name].append(p.run(steps, sync))
    return times


def ratio_stats(times: Iterable[float], base: Iterable[float]) -> dict[str, float]:
    """Median, min and max over rounds of ``time / base time of the same round``."""
    ratios = [t / b for t, b in zip(times, base, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summarise(times: dict[str, list[float]], base: str = "plain") -> dict[str, dict[str, float]]:
    """Per participant: its ratio stats to ``base`` and its median milliseconds per step."""
    out: dict[str, dict[str, float]] = {}
    for name, t in times.items():
        stats = ratio_stats(t, times[base])
        stats["ms"] = 1e3 * statistics.median(t)
        out[name] = stats
    return out
