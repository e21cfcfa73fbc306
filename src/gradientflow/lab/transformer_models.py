"""A tiny causal transformer language model and its data, for the transformer experiments.

The text is the source of a few Python standard library modules (it ships with every Python),
read as bytes folded into 7-bit ASCII; the model predicts the next character. The model is
``nn.TransformerEncoderLayer`` blocks with a causal mask, learned positions and a linear head:
pre-LN (``norm_first=True``, with a final LayerNorm) or post-LN.

>>> data = char_corpus()
>>> int(data.max()) < VOCAB, data.numel() > 100_000
(True, True)
>>> model = TinyLM(norm_first=True, seed=0)
>>> x, y = next(iter(lm_batches(data, steps=1, batch=4, seq=16, seed=0)))
>>> model(x).shape, y.shape
(torch.Size([4, 16, 128]), torch.Size([4, 16]))
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

VOCAB = 128
_MODULES = ("argparse", "textwrap", "difflib", "tarfile")


@functools.lru_cache(maxsize=1)
def char_corpus() -> Tensor:
    """The standard-library text as a 1-D LongTensor of character codes < 128."""
    chunks = []
    for name in _MODULES:
        path = importlib.import_module(name).__file__
        assert path is not None
        chunks.append(Path(path).read_bytes())
    data = torch.frombuffer(bytearray(b"\n".join(chunks)), dtype=torch.uint8).long()
    return data % VOCAB


def lm_batches(
    data: Tensor, *, steps: int, batch: int, seq: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """``steps`` random windows of ``seq`` characters: (inputs, next characters)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        start = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
        idx = start[:, None] + torch.arange(seq + 1)
        window = data[idx]
        yield window[:, :-1], window[:, 1:]


class TinyLM(nn.Module):
    """Embedding + positions, ``layers`` causal transformer blocks, (final LN), linear head."""

    def __init__(
        self,
        *,
        d_model: int = 32,
        heads: int = 2,
        layers: int = 2,
        ffn: int = 64,
        seq: int = 32,
        norm_first: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Parameter(torch.randn(seq, d_model) * 0.02)
        block = nn.TransformerEncoderLayer(
            d_model, heads, ffn, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        final = nn.LayerNorm(d_model) if norm_first else None
        self.encoder = nn.TransformerEncoder(block, layers, norm=final, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, VOCAB)
        self.register_buffer("mask", torch.ones(seq, seq, dtype=torch.bool).triu(1))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        h = self.embed(x) + self.pos[:n]
        full: Tensor = self.mask  # type: ignore[assignment]
        mask = full[:n, :n]
        out: Tensor = self.head(self.encoder(h, mask=mask, is_causal=True))
        return out


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Next-character cross-entropy, mean over positions."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class LMRun:
    """One small-LM training: per-step losses, the watched Trace and what diagnose() found."""

    losses: list[float]
    trace: Any
    findings: list[str]

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 10% of the steps (NaN-robust: inf if diverged)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        value = sum(tail) / len(tail)
        return value if math.isfinite(value) else math.inf

    def extra_max(self, suffix: str) -> float:
        """Largest value over layers and heads of an attention statistic, last sample."""
        rows = [v[-1] for k, v in self.trace.extras.items() if k.endswith(suffix)]
        return float(max(r.max() for r in rows)) if rows else math.nan

    def extra_min(self, suffix: str) -> float:
        rows = [v[-1] for k, v in self.trace.extras.items() if k.endswith(suffix)]
        return float(min(r.min() for r in rows)) if rows else math.nan


def train_lm(
    model: nn.Module,
    *,
    lr: float,
    steps: int,
    seed: int,
    warmup: int = 0,
    batch: int = 16,
    seq: int = 32,
) -> LMRun:
    """AdamW (no weight decay) on the character corpus, watched with an AttentionProbe."""
    import gradientflow
    from gradientflow.diagnosis import diagnose
    from gradientflow.probes.attention import AttentionProbe
    from gradientflow.remedies.warmup import LinearWarmup

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = LinearWarmup(warmup).attach(opt) if warmup else None
    sched = gradientflow.Schedule(full_every=10)
    losses: list[float] = []
    probe = AttentionProbe(model)
    with gradientflow.watch(model, opt, probes=[probe], schedule=sched) as mon:
        for x, y in lm_batches(char_corpus(), steps=steps, batch=batch, seq=seq, seed=seed):
            opt.zero_grad()
            loss = lm_loss(model(x), y)
            loss.backward()
            mon.log(loss)
            opt.step()
            losses.append(float(loss.detach()))
    if warm is not None:
        warm.detach()
    trace = mon.trace
    kinds = sorted({f.kind for f in diagnose(trace).at_least("warning")})
    return LMRun(losses, trace, kinds)
