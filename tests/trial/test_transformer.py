"""``trial`` shows the fixes: qk_layernorm at a high LR, warmup for post-LN (3 seeds each)."""

from __future__ import annotations

import pytest
import torch

from gradientflow.lab.transformer_models import TinyLM, char_corpus, lm_batches, lm_loss
from gradientflow.trial import trial


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(lm_batches(char_corpus(), steps=steps, batch=16, seq=32, seed=0))


@pytest.mark.slow
def test_trial_qk_layernorm_beats_baseline_at_high_lr() -> None:
    torch.set_num_threads(1)
    table = trial(
        lambda: TinyLM(),
        _batches(150),
        lm_loss,
        ["qk_layernorm"],
        seeds=(0, 1, 2),
        optimizer=torch.optim.AdamW,
        lr=0.1,
        progress=False,
    )
    rows = {r.name: r for r in table}
    base, fixed = rows["baseline"], rows["qk_layernorm"]
    for b, f in zip(base.per_seed, fixed.per_seed, strict=True):
        assert f.final_loss < 0.93 * b.final_loss, (b.final_loss, f.final_loss)


@pytest.mark.slow
def test_trial_warmup_rescues_post_ln() -> None:
    torch.set_num_threads(1)
    table = trial(
        lambda: TinyLM(norm_first=False, layers=6),
        _batches(200),
        lm_loss,
        ["warmup", "to_pre_ln"],
        seeds=(0, 1, 2),
        optimizer=torch.optim.Adam,
        lr=1e-2,
        progress=False,
    )
    rows = {r.name: r for r in table}
    for name in ("warmup", "to_pre_ln"):
        assert rows[name].final_loss < 0.9 * rows["baseline"].final_loss, name
