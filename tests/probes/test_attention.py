"""The attention probe against PyTorch's and Hugging Face's own attention weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow.probes.attention import AttentionProbe
from gradientflow.probes.attention_math import head_stats, mha_logits


def _entropy(w: torch.Tensor) -> torch.Tensor:
    """Per head mean and min over (batch, queries) of the entropy of weights (B, H, L, S)."""
    ent = -(w.double() * w.double().clamp_min(1e-300).log()).sum(-1)
    ent = ent.transpose(0, 1).reshape(w.shape[1], -1)
    return torch.stack([ent.mean(-1), ent.min(-1).values])


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_with_masks_matches_pytorch_weights(batch_first: bool) -> None:
    mha = nn.MultiheadAttention(12, 3, batch_first=batch_first)
    x = torch.randn(4, 7, 12) * 3
    xin = x if batch_first else x.transpose(0, 1)
    pad = torch.zeros(4, 7, dtype=torch.bool)
    pad[0, 5:] = True
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)
    kwargs = {"key_padding_mask": pad, "attn_mask": causal}
    _, w = mha(xin, xin, xin, average_attn_weights=False, **kwargs)
    logits = mha_logits(mha, (xin, xin, xin), kwargs).detach()
    mx, mean, mn = head_stats(logits)
    ref = _entropy(w.detach())
    assert torch.allclose(mean, ref[0], atol=1e-5) and torch.allclose(mn, ref[1], atol=1e-5)
    # the largest logit among allowed entries, by brute force
    allowed = torch.isfinite(logits)
    assert torch.allclose(mx, logits.where(allowed, -1e9).amax((0, 2, 3)).double())
    assert float(mn.min()) == pytest.approx(0.0, abs=1e-9)  # query 0 sees one key only


@pytest.mark.parametrize("scale", [0.1, 3.0, 300.0])
def test_unmasked_logits_take_the_short_path_with_the_same_numbers(scale: float) -> None:
    """Unmasked CPU logits (the short path) give PyTorch's own attention weights' entropies,
    near one-hot ones too; a NaN or -inf entry sends the logits down the masked path, where
    it counts as a masked key (the same numbers as -inf there)."""
    from gradientflow.probes import attention_math

    mha = nn.MultiheadAttention(12, 3, batch_first=True)
    x = torch.randn(4, 7, 12, generator=torch.Generator().manual_seed(0)) * scale
    _, w = mha(x, x, x, average_attn_weights=False)
    logits = mha_logits(mha, (x, x, x), {}).detach()
    mx, mean, mn = head_stats(logits)
    ref = _entropy(w.detach())
    assert torch.allclose(mean, ref[0], atol=1e-5) and torch.allclose(mn, ref[1], atol=1e-5)
    assert torch.equal(mx, logits.amax((0, 2, 3)).double())
    masked = logits.clone()
    masked[1, 2, 3, 4] = -math.inf
    holed = logits.clone()
    holed[1, 2, 3, 4] = math.nan
    assert attention_math._unmasked_head_stats(holed)[1].isnan().any()
    for a, b in zip(head_stats(holed), head_stats(masked), strict=True):
        assert torch.equal(a, b) and bool(torch.isfinite(a).all())


def test_masked_logits_go_straight_to_the_masked_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A causal model's logits (-inf above the diagonal) are not first sent down the short
    path and thrown away: that would cost them half again."""
    from gradientflow.probes import attention_math

    def refuse(logits: torch.Tensor) -> None:
        raise AssertionError("masked logits took the short path")

    monkeypatch.setattr(attention_math, "_unmasked_head_stats", refuse)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    mn = head_stats(mha_logits(mha, (x, x, x), {"attn_mask": causal}).detach())[2]
    assert float(mn.min()) == pytest.approx(0.0, abs=1e-9)  # query 0 sees one key only


def _encoder(blocks: int) -> tuple[nn.Module, torch.optim.Optimizer, AttentionProbe]:
    """A small pre-LN encoder with an 11-way head, its optimizer and its attention probe."""
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
    model = nn.Sequential(
        nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False), nn.Linear(16, 11)
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01), AttentionProbe(model)


def test_probe_in_a_watched_training_loop_and_logits() -> None:
    model, opt, probe = _encoder(2)
    sched = gradientflow.Schedule.everything()
    with gradientflow.watch(model, opt, probes=[probe], schedule=sched) as mon:
        for _ in range(3):
            opt.zero_grad()
            out = model(torch.randn(5, 9, 16))
            loss = nn.functional.cross_entropy(out.reshape(-1, 11), torch.randint(0, 11, (45,)))
            loss.backward()
            opt.step()
            last = out.detach()
    ex = mon.trace.extras
    assert ex["attn/0.layers.0.self_attn/max_logit"].shape == (3, 2)
    assert list(ex["attn/0.layers.1.self_attn/steps"]) == [0, 1, 2]
    assert ex["attn/0.layers.1.self_attn/post_ln"][0] == 0.0
    assert ex["attn/0.layers.0.self_attn/block"][0] == "0.layers.0"
    ent = ex["attn/0.layers.0.self_attn/entropy_mean"]
    assert np.all(ent > 0) and np.all(ent <= math.log(9) + 1e-9)
    # the output logits of the last step, by hand (weights before the last update)
    assert ex["logits/log_z"][-1] == pytest.approx(
        float(torch.logsumexp(last.double(), -1).mean()), rel=1e-6
    )
    assert ex["logits/rms"][-1] == pytest.approx(float(last.double().pow(2).mean().sqrt()))
    assert ex["logits/vocab"][0] == 11


def _hf_check(model: nn.Module, ids: torch.Tensor, key: str, post_ln: float) -> None:
    probe = AttentionProbe(model)
    probe.attach()
    out = model(ids, output_attentions=True)
    probe.on_step(0, True)
    probe.detach()
    ex = probe.extras()
    ref = _entropy(out.attentions[0].detach())
    assert np.allclose(ex[f"attn/{key}/entropy_mean"][0], ref[0].numpy(), atol=1e-5)
    assert np.allclose(ex[f"attn/{key}/entropy_min"][0], ref[1].numpy(), atol=1e-5)
    assert ex[f"attn/{key}/post_ln"][0] == post_ln or (math.isnan(post_ln))


def test_hugging_face_bert_and_gpt2_eager() -> None:
    transformers = pytest.importorskip("transformers")
    small = {
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "vocab_size": 50,
        "attn_implementation": "eager",
    }
    bert = transformers.BertModel(transformers.BertConfig(**small)).eval()
    ids = torch.randint(0, 50, (3, 8))
    _hf_check(bert, ids, "encoder.layer.0.attention.self", 1.0)
    gcfg = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=16, vocab_size=50, attn_implementation="eager"
    )
    gpt = transformers.GPT2LMHeadModel(gcfg).eval()
    _hf_check(gpt, ids, "transformer.h.0.attn", 0.0)


def test_bad_arguments() -> None:
    with pytest.raises(gradientflow.GradientFlowError, match="every"):
        AttentionProbe(nn.Linear(2, 2), every=0)


@pytest.mark.parametrize("shape", [(2, 3, 4, 0), (2, 3, 0, 4), (0, 3, 4, 4)])
def test_head_stats_of_empty_logits_are_nan_per_head(shape: tuple[int, ...]) -> None:
    for v in head_stats(torch.zeros(shape)):
        assert v.shape == (3,) and v.dtype == torch.float64 and bool(v.isnan().all())


def test_an_empty_batch_is_skipped_and_the_probe_keeps_measuring() -> None:
    """A step whose forward saw an empty batch records no attention row and no output-logit
    row, raises nothing and does not stop the probe: the next steps are measured."""
    import warnings

    model, opt, probe = _encoder(1)
    sched = gradientflow.Schedule.everything()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stopped probe warns
        with gradientflow.watch(model, opt, probes=[probe], schedule=sched) as mon:
            for batch in (5, 0, 4):
                opt.zero_grad()
                out = model(torch.randn(batch, 9, 16))
                out.square().sum().backward()
                opt.step()
    ex = mon.trace.extras
    assert list(ex["attn/0.layers.0.self_attn/steps"]) == [0, 2]
    assert bool(np.isfinite(ex["attn/0.layers.0.self_attn/entropy_mean"]).all())
    assert list(ex["logits/steps"]) == [0, 2]
    assert "attention_error" not in mon.trace.meta
