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
from collections.abc import Iterator
from pathlib import Path

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
        mask: Tensor = self.mask[:n, :n]
        out: Tensor = self.head(self.encoder(h, mask=mask, is_causal=True))
        return out


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Next-character cross-entropy, mean over positions."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
