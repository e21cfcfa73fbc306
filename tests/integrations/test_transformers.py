"""The Hugging Face callback in a real ``transformers.Trainer`` on tiny BERT and GPT-2 models
built from configs (nothing downloaded): the recorded per-layer norms equal, at every optimizer
step, the norms of ``p.grad`` after the step's last backward and before ``max_grad_norm``
clips them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.integrations.grad_reference import GradSnapshots, assert_matches

transformers = pytest.importorskip("transformers")
from gradientflow.integrations.transformers import GradientFlowCallback  # noqa: E402

STEPS, VOCAB, LENGTH = 5, 40, 12


def _bert() -> Any:
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def _gpt2() -> Any:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=LENGTH
    )
    return transformers.GPT2LMHeadModel(config)


def _data(n: int, lm: bool) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    labels = ids if lm else torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


class _Reference(transformers.TrainerCallback):
    def __init__(self, ref: GradSnapshots) -> None:
        self.ref = ref

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ref.close_step()  # the snapshot after the step's last backward (pre-clip)


def _train(
    tmp_path: Path, name: str, model: Any, lm: bool, **settings: Any
) -> tuple[Any, GradSnapshots]:
    ref = GradSnapshots(model)

    class Trainer(transformers.Trainer):
        def training_step(self, *args: Any, **kwargs: Any) -> Any:
            loss = super().training_step(*args, **kwargs)
            ref.snap()  # after this micro-batch's backward
            return loss

    accumulate = settings.pop("gradient_accumulation_steps", 1)
    logging_steps = settings.pop("logging_steps", 1000)
    n_examples = settings.pop("n_examples", 4 * accumulate * STEPS)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulate,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=logging_steps,
        disable_tqdm=True,
        **settings,
    )
    callback = GradientFlowCallback(show=False, report=name == "bert-clip-1")
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_data(n_examples, lm),
        callbacks=[callback, _Reference(ref)],
    )
    trainer.train()
    callback.log_history = trainer.state.log_history  # type: ignore[attr-defined]
    return callback, ref


CASES = {
    "bert-clip-1": (_bert, False, {"max_grad_norm": 1.0}),
    "bert-no-clip": (_bert, False, {"max_grad_norm": 0.0}),
    "gpt2-accumulate-4": (_gpt2, True, {"max_grad_norm": 1.0, "gradient_accumulation_steps": 4}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_trainer_records_each_steps_true_gradients(tmp_path: Path, name: str) -> None:
    make, lm, settings = CASES[name]
    torch.manual_seed(0)
    callback, ref = _train(tmp_path, name, make(), lm, **dict(settings))
    trace = callback.monitor.trace
    assert trace.n_records == STEPS
    assert_matches(trace.metrics["grad_norm"], ref.per_layer(trace.layer_names))
    assert np.isfinite(trace.scalars["loss"]).all()
    post_layers = trace.metrics["grad_norm_postclip"]
    post = np.sqrt(np.nansum(np.square(post_layers), axis=1))
    pre = trace.scalars["global_grad_norm"]
    if settings["max_grad_norm"] > 0:
        np.testing.assert_allclose(post, np.minimum(pre, 1.0), rtol=1e-4)
    else:  # no clipping function ran: nothing to keep beside the true norms
        assert np.isnan(post_layers).all()
    assert (tmp_path / "gradientflow" / "report.html").is_file() == (name == "bert-clip-1")
    saved = json.loads((tmp_path / "gradientflow" / "diagnosis.json").read_text())
    assert saved["healthy"] == callback.diagnosis.healthy


def test_the_step_loss_of_a_causal_lm_with_accumulation_is_the_trainers(tmp_path: Path) -> None:
    """GPT-2 takes num_items_in_batch: each micro-batch's loss is its share of the window's
    mean, so the step's loss is their sum (their mean read about a third of it, and jumped on
    the epoch's short last window). The trace's loss is the one the Trainer logs, at every
    step, the short windows included."""
    torch.manual_seed(0)
    settings = {"gradient_accumulation_steps": 3, "logging_steps": 1, "max_grad_norm": 0.0}
    callback, _ = _train(tmp_path, "gpt2", _gpt2(), True, n_examples=4 * 3 * 2 + 4 * 2, **settings)
    logged = [h["loss"] for h in callback.log_history if "loss" in h]
    trace = callback.monitor.trace
    assert len(logged) == trace.n_records >= 3
    np.testing.assert_allclose(trace.scalars["loss"], logged, rtol=1e-3)
