"""Layer order follows the forward pass for modules used functionally (MultiheadAttention's
out_proj), and a tied head is labelled as tied."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import gradientflow
from gradientflow.trace import Trace


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 3)  # registered first, used last
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.embed = nn.Linear(4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def _one_step(model: nn.Module, x: torch.Tensor) -> gradientflow.Monitor:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradientflow.watch(model, opt) as mon:
        model(x).float().pow(2).mean().backward()
        opt.step()
    return mon


def test_out_proj_is_ordered_where_attention_uses_it() -> None:
    mon = _one_step(Encoder(), torch.randn(2, 5, 4))
    block = ["self_attn", "self_attn.out_proj", "norm1", "linear1", "linear2", "norm2"]
    expected = ["embed"]
    for i in range(2):
        expected += [f"encoder.layers.{i}.{name}" for name in block]
    assert mon.trace.layer_names == [*expected, "head"]


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 11)  # its own bias, the embedding's weight
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.emb(ids))))


def test_a_tied_head_is_labelled_tied(tmp_path: Path) -> None:
    mon = _one_step(TiedLM(), torch.randint(0, 11, (4, 6)))
    layers = {info.name: info for info in mon.trace.layers}
    assert list(layers) == ["emb", "mix", "head"]
    assert layers["head"].tied_to == "emb" and layers["head"].n_params == 11  # bias only
    assert layers["emb"].tied_to is None and layers["mix"].tied_to is None
    assert mon.trace.summary_rows()[2]["kind"] == "Linear, tied to emb"  # in every table
    loaded = Trace.load(mon.trace.save(tmp_path / "run"))  # the label survives a save and load
    assert [info.tied_to for info in loaded.layers] == [None, None, "emb"]
