"""The transformer remedies keep the weights and change what they say they change."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.pre_ln import to_pre_ln
from gradientflow.remedies.qk_layernorm import (
    HeadNormedQKV,
    QKNormMultiheadAttention,
    qk_layernorm,
)
from gradientflow.remedies.registry import REGISTRY
from gradientflow.remedies.warmup import LinearWarmup
from gradientflow.remedies.z_loss import z_loss, z_loss_term


def _layer(norm_first: bool = False) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first
    )


def test_qk_layernorm_keeps_weights_and_norms_q_and_k() -> None:
    layer = _layer()
    new = qk_layernorm(layer)
    attn = new.self_attn
    assert isinstance(attn, QKNormMultiheadAttention)
    assert torch.equal(attn.in_proj_weight, layer.self_attn.in_proj_weight)
    assert torch.equal(attn.out_proj.weight, layer.self_attn.out_proj.weight)
    assert torch.equal(new.linear1.weight, layer.linear1.weight)
    assert isinstance(layer.self_attn, nn.MultiheadAttention)  # input untouched
    x = torch.randn(3, 6, 16)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)
    # with the norms made identities it is the very same attention as PyTorch's
    attn.q_norm, attn.k_norm = nn.Identity(), nn.Identity()  # type: ignore[assignment]
    ref, _ = layer.self_attn(x, x, x, attn_mask=mask)
    out, _ = attn(x, x, x, attn_mask=mask)
    assert torch.allclose(out, ref, atol=1e-5)
    # with the norms, scaling the q/k weights 100x no longer scales the logits
    norm = qk_layernorm(layer).self_attn
    logits = norm.attention_logits((x, x, x), {})
    with torch.no_grad():
        norm.in_proj_weight[:32] *= 100
    assert torch.allclose(norm.attention_logits((x, x, x), {}), logits, atol=1e-3)
    # eval mode (PyTorch's fused inference path) still goes through the norms
    fresh = qk_layernorm(layer)
    train_out = fresh(x)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), train_out, atol=1e-5)
        assert not torch.allclose(fresh(x), layer.eval()(x), atol=1e-3)


def test_qk_layernorm_refuses_a_model_without_attention() -> None:
    with pytest.raises(GradientFlowError, match=r"no nn\.MultiheadAttention"):
        qk_layernorm(nn.Linear(2, 2))


def test_to_pre_ln_keeps_weights() -> None:
    enc = nn.TransformerEncoder(_layer(), 3, enable_nested_tensor=False)
    new = to_pre_ln(enc)
    assert all(layer.norm_first for layer in new.layers)
    assert not enc.layers[0].norm_first
    for a, b in zip(enc.state_dict().items(), new.state_dict().items(), strict=False):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert isinstance(new.norm, nn.LayerNorm)
    # the output is the pre-LN formula x + attn(norm1(x)) ... by hand for one layer
    layer, x = to_pre_ln(_layer()), torch.randn(2, 5, 16)
    h = x + layer.self_attn(*(layer.norm1(x),) * 3)[0]
    ref = h + layer.linear2(torch.relu(layer.linear1(layer.norm2(h))))
    assert torch.allclose(layer(x), ref, atol=1e-5)
    with pytest.raises(GradientFlowError, match="post-LN"):
        to_pre_ln(_layer(norm_first=True))


def test_z_loss_adds_exactly_the_gradient_and_keeps_the_output() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 12))
    with torch.no_grad():
        model[0].bias += 30.0  # log Z ~ 32: a strong pull
    wrapped = z_loss(model, coef=1e-2)
    x, y = torch.randn(4, 5, 6), torch.randint(0, 12, (4, 5))
    out = wrapped(x)
    assert torch.equal(out, model(x))
    ce = nn.functional.cross_entropy(out.reshape(-1, 12), y.reshape(-1))
    ce.backward()
    ref = model(x)
    total = nn.functional.cross_entropy(ref.reshape(-1, 12), y.reshape(-1))
    (total + z_loss_term(ref, 1e-2)).backward()
    got = wrapped.model[0].bias.grad
    assert torch.allclose(got, model[0].bias.grad, atol=1e-6)
    # the pull lowers every logit: log Z goes toward 0
    assert float(got.sum()) > 0


def test_warmup_restores_the_learning_rate_and_is_registered() -> None:
    opt = torch.optim.Adam(nn.Linear(2, 2).parameters(), lr=0.3)
    warm = REGISTRY["warmup"].prepare(opt)
    assert isinstance(warm, LinearWarmup)
    opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3 / warm.steps)
    warm.detach()
    assert opt.param_groups[0]["lr"] == 0.3
    assert {"qk_layernorm", "z_loss", "warmup", "to_pre_ln"} <= set(REGISTRY)


def test_qk_layernorm_on_hugging_face_bert() -> None:
    transformers = pytest.importorskip("transformers")
    from gradientflow.probes.attention import AttentionProbe

    cfg = transformers.BertConfig(
        num_hidden_layers=1,
        num_attention_heads=2,
        hidden_size=16,
        intermediate_size=32,
        vocab_size=50,
        attn_implementation="eager",
    )
    bert = transformers.BertModel(cfg).eval()
    new = qk_layernorm(bert)
    attn = new.encoder.layer[0].attention.self
    assert torch.equal(attn.query.proj.weight, bert.encoder.layer[0].attention.self.query.weight)
    ids = torch.randint(0, 50, (2, 7))
    probe = AttentionProbe(new)
    probe.attach()
    out = new(ids, output_attentions=True)
    probe.on_step(0, True)
    probe.detach()
    w = out.attentions[0].detach().double()
    ent = -(w * w.clamp_min(1e-300).log()).sum(-1).transpose(0, 1).reshape(2, -1).mean(-1)
    key = "attn/encoder.layer.0.attention.self/entropy_mean"
    assert torch.allclose(torch.from_numpy(probe.extras()[key][0]), ent, atol=1e-5)


def _gpt2(impl: str = "eager", seed: int | None = 0, vocab: int = 50) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    if seed is not None:
        torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=16,
        n_positions=32,
        vocab_size=vocab,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation=impl,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def _hand_logits(gpt: nn.Module, attn: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Block 0's attention logits by hand: the original c_attn, F.layer_norm on q and k."""
    t: Any = gpt
    x = t.transformer.h[0].ln_1(t.transformer.wte(ids) + t.transformer.wpe(torch.arange(7)))
    q, k, _ = t.transformer.h[0].attn.c_attn(x).split(16, dim=-1)
    norm: Any = attn
    qn = nn.functional.layer_norm(
        q.unflatten(-1, (2, 8)), (8,), norm.q_norm.weight, norm.q_norm.bias
    )
    kn = nn.functional.layer_norm(
        k.unflatten(-1, (2, 8)), (8,), norm.k_norm.weight, norm.k_norm.bias
    )
    logits = qn.transpose(1, 2) @ kn.permute(0, 2, 3, 1) / 8**0.5
    return logits.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))


def test_qk_layernorm_on_hugging_face_gpt2() -> None:
    from gradientflow.probes.attention import AttentionProbe

    gpt = _gpt2()
    new: Any = qk_layernorm(gpt)
    fused = new.transformer.h[0].attn.c_attn
    assert isinstance(fused, HeadNormedQKV)
    assert type(gpt.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # input untouched
    # every weight kept (c_attn's under c_attn.proj); the only new ones are the norms
    old, now = gpt.state_dict(), new.state_dict()
    for key, value in old.items():
        assert torch.equal(now[key.replace("attn.c_attn.", "attn.c_attn.proj.")], value), key
    assert {
        k.rsplit(".", 2)[-2]
        for k in set(now) - {k.replace("attn.c_attn.", "attn.c_attn.proj.") for k in old}
    } == {"q_norm", "k_norm"}
    with torch.no_grad():  # norms that are not identities, so the check means something
        for m in new.modules():
            if isinstance(m, HeadNormedQKV):
                for ln in (m.q_norm, m.k_norm):
                    ln.weight.uniform_(0.5, 2.0)
                    ln.bias.normal_(0.0, 0.5)
    ids = torch.randint(0, 50, (3, 7))
    probe = AttentionProbe(new)
    probe.attach()
    out = new(ids, output_attentions=True)
    probe.on_step(0, True)
    probe.detach()
    ref = _hand_logits(gpt, fused, ids)
    assert torch.allclose(out.attentions[0], ref.softmax(-1), atol=1e-5)
    mx = ref.transpose(0, 1).reshape(2, -1).max(-1).values.double()
    ex = probe.extras()
    assert torch.allclose(torch.from_numpy(ex["attn/transformer.h.0.attn/max_logit"][0]), mx)
    assert not torch.allclose(out.logits, gpt(ids).logits, atol=1e-3)
    # the same weights under PyTorch's fused attention (sdpa) give the same output
    sdpa: Any = qk_layernorm(_gpt2("sdpa"))
    sdpa.load_state_dict(new.state_dict())
    with torch.no_grad():
        assert torch.allclose(sdpa(ids).logits, out.logits, atol=1e-5)
    assert qk_layernorm(new).state_dict().keys() == now.keys()  # idempotent
    assert REGISTRY["qk_layernorm"].applicable(gpt) is None


@pytest.mark.slow
@pytest.mark.training
def test_qk_layernorm_gpt2_trains_and_trial_prescribe_take_it() -> None:
    from gradientflow.diagnosis.findings import Diagnosis, Finding
    from gradientflow.lab.transformer_models import VOCAB, char_corpus, lm_batches, lm_loss
    from gradientflow.remedies.prescribe import prescribe
    from gradientflow.trial import trial

    torch.set_num_threads(1)
    sick = Finding("attention_entropy_collapse", "critical", ["a"], {}, "x.", ["qk_layernorm"])
    assert prescribe(Diagnosis([sick]), _gpt2())[0].name == "qk_layernorm"
    batches = list(lm_batches(char_corpus(), steps=60, batch=8, seq=32, seed=0))
    table = trial(
        lambda: _gpt2(seed=None, vocab=VOCAB).train(),  # trial seeds each build
        batches,
        lambda out, y: lm_loss(out.logits, y),
        ["qk_layernorm"],
        seeds=(0, 1, 2),
        optimizer=torch.optim.AdamW,
        lr=1e-2,
        progress=False,
    )
    rows = {r.name: r for r in table}
    for run in rows["qk_layernorm"].per_seed:  # from log 128 = 4.85 at init
        assert run.final_loss < 3.6, run.final_loss
