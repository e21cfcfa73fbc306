"""Models for the zoo, written here (torchvision is not available): MLPs, a ResNet-18-style
net with BatchNorm and He init, a VGG-style net, a 1-D CNN, transformer encoders (pre-LN and
post-LN), tiny BERT and GPT-2 built from ``transformers`` configs (no download), recurrent nets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Init = Callable[[torch.Tensor], object]


def mlp(
    widths: list[int],
    act: Callable[[], nn.Module],
    init: Init | None = None,
    norm: str | None = None,
    bias: float | None = None,
) -> nn.Sequential:
    """Linear layers of ``widths`` with ``act`` between them; optional BatchNorm/LayerNorm,
    weight init and a constant bias."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        lin = nn.Linear(a, b)
        if init is not None:
            init(lin.weight)
        if bias is not None:
            nn.init.constant_(lin.bias, bias)
        layers.append(lin)
        if i < len(widths) - 2:
            if norm == "bn":
                layers.append(nn.BatchNorm1d(b))
            elif norm == "ln":
                layers.append(nn.LayerNorm(b))
            layers.append(act())
    return nn.Sequential(*layers)


def he(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def lecun(w: torch.Tensor) -> None:
    nn.init.normal_(w, 0.0, float(w.shape[1]) ** -0.5)


def scaled_normal(gain: float) -> Init:
    """N(0, (gain / sqrt(fan_in))^2)."""

    def init(w: torch.Tensor) -> None:
        nn.init.normal_(w, 0.0, gain * float(w[0].numel()) ** -0.5)

    return init


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 layout (stem, 4 stages of 2 basic blocks, pool, fc), BN and He init, as in
    torchvision, with a 3x3 stem for small images and a width parameter."""

    def __init__(self, in_ch: int = 1, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, c = [], width
        for i, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w, 1)))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def vgg(
    act: Callable[[], nn.Module], bn: bool, channels: tuple[int, ...] = (16, 16, 32, 32)
) -> nn.Sequential:
    """VGG-style: 3x3 conv(-BN)-act pairs, a max-pool after each pair, then a linear head."""
    layers: list[nn.Module] = []
    c, size = 1, 8
    for i, w in enumerate(channels):
        layers.append(nn.Conv2d(c, w, 3, padding=1))
        if bn:
            layers.append(nn.BatchNorm2d(w))
        layers.append(act())
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * size * size, 10))


def cnn1d(width: int = 32) -> nn.Sequential:
    """The MNIST-1D paper's style of 1-D CNN: three 3-tap conv layers with ReLU, a linear head."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, width, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(width * 5, 10),
    )  # fmt: skip


class EncoderClassifier(nn.Module):
    """Token embedding + learned positions + nn.TransformerEncoder + a head on position 0."""

    def __init__(self, vocab: int, length: int, d: int, layers: int, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, length, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        final = nn.LayerNorm(d) if norm_first else None
        self.encoder = nn.TransformerEncoder(layer, layers, norm=final, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(tokens) + self.pos[:, : tokens.shape[1]])
        return self.head(h[:, 0])


class HFLogits(nn.Module):
    """A ``transformers`` model whose forward returns plain logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=tokens).logits
        return logits


def tiny_bert(vocab: int, layers: int, hidden: int, length: int) -> nn.Module:
    """BertForSequenceClassification from a BertConfig (post-LN), randomly initialised."""
    from transformers import BertConfig, BertForSequenceClassification

    kw: dict[str, Any] = dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, max_position_embeddings=length, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    cfg = BertConfig(**kw)
    return HFLogits(BertForSequenceClassification(cfg))


def tiny_gpt2(vocab: int, layers: int, hidden: int, length: int) -> nn.Module:
    """GPT2LMHeadModel from a GPT2Config (pre-LN), randomly initialised."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab, n_positions=length, n_embd=hidden, n_layer=layers, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return HFLogits(GPT2LMHeadModel(cfg))


class Recurrent(nn.Module):
    """An nn.RNN / nn.LSTM / nn.GRU over the sequence and a linear head on the last state."""

    def __init__(self, kind: str, n_in: int, hidden: int, n_out: int, **kw: object) -> None:
        super().__init__()
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cls(n_in, hidden, batch_first=True, **kw)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
