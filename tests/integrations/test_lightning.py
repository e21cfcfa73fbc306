"""The Lightning callback in a real ``lightning.Trainer`` on CPU: the recorded per-layer norms
equal, at every optimizer step, the norms of ``p.grad`` taken by the module's own
``on_before_optimizer_step`` (after backward and accumulation, before clipping)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.integrations.grad_reference import GradSnapshots, assert_matches

L = pytest.importorskip("lightning")
from gradientflow.integrations.lightning import GradientFlow  # noqa: E402
from gradientflow.trace import Trace  # noqa: E402

STEPS = 6


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(8, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 1)
        )
        self.ref = GradSnapshots(self)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return (self.net(x).float() - y).pow(2).mean()

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.ref.snap()  # accumulated, unscaled, not yet clipped
        self.ref.close_step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _loader(n: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 8, generator=g), torch.randn(n, 1, generator=g) * 3
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _trainer(tmp_path: Path, callback: GradientFlow, **settings: Any) -> L.Trainer:
    """A quiet CPU trainer with ``callback``; ``settings`` add to or replace its options."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": tmp_path,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [callback],
    }
    return L.Trainer(**{**options, **settings})


def _fit(tmp_path: Path, report: bool = False, **settings: Any) -> tuple[Regressor, GradientFlow]:
    torch.manual_seed(0)
    module = Regressor()
    callback = GradientFlow(show=False, report=report)
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer = _trainer(tmp_path, callback, max_steps=STEPS, logger=logger, **settings)
    batches = STEPS * settings.get("accumulate_grad_batches", 1)
    trainer.fit(module, _loader(8 * batches))
    return module, callback


SETTINGS = {
    "32-true": {},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "accumulate-4": {"accumulate_grad_batches": 4},
    "clip-0.05": {"gradient_clip_val": 0.05},
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_lightning_records_each_steps_true_gradients(tmp_path: Path, name: str) -> None:
    module, callback = _fit(tmp_path, **SETTINGS[name])
    assert callback.monitor is not None
    trace = callback.monitor.trace
    assert trace.n_records == STEPS and trace.layer_names == ["net.0", "net.2", "net.4"]
    assert_matches(trace.metrics["grad_norm"], module.ref.per_layer(trace.layer_names))
    assert np.isfinite(trace.scalars["loss"]).all()
    post = trace.metrics["grad_norm_postclip"]
    if name.startswith("clip"):
        post_global = np.sqrt(np.square(post).sum(axis=1))
        assert post_global.max() <= 0.05 * (1 + 1e-4)
        assert trace.scalars["global_grad_norm"].min() > 0.05  # it really clipped every step
    else:
        assert np.isnan(post).all()


def test_lightning_logs_saves_and_reports(tmp_path: Path) -> None:
    _, callback = _fit(tmp_path, report=True)
    run_dir = callback.run_dir
    assert run_dir is not None and run_dir.parent == tmp_path / "lightning_logs" / "version_0"
    assert (run_dir / "report.html").is_file()
    saved = json.loads((run_dir / "diagnosis.json").read_text())
    assert saved["healthy"] == callback.diagnosis.healthy
    # the same document as `gradientflow diagnose --out` writes: findings, meta, layers
    assert {"verdict", "reason", "worst", "findings", "meta", "layers"} <= set(saved)
    assert set(callback.diagnosis.to_dict()["meta"]) <= set(saved["meta"])
    assert [row["name"] for row in saved["layers"]] == callback.monitor.trace.layer_names
    trace = Trace.load(run_dir)
    expected = callback.monitor.trace.metrics["grad_norm"]  # type: ignore[union-attr]
    np.testing.assert_array_equal(trace.metrics["grad_norm"], expected)
    metrics_csv = run_dir.parent / "metrics.csv"
    rows = list(csv.DictReader(metrics_csv.open()))
    logged = [r for r in rows if r.get("gradientflow/grad_norm/net.0")]
    assert [int(r["step"]) for r in logged] == list(range(STEPS))
    values = [float(r["gradientflow/grad_norm/net.0"]) for r in logged]
    np.testing.assert_allclose(values, expected[:, 0], rtol=1e-6)


def test_lightning_fp16_gradscaler_skips_are_recorded_and_leave_no_stale_reading(
    tmp_path: Path,
) -> None:
    """16-mixed with a GradScaler and clipping: the trainer's scaler is given to the monitor,
    so the steps it skips (inf gradients while the scale comes down) are recorded as skipped,
    and their inf/NaN pre-clip reading does not stand in for the next real step's (it did:
    the first real steps read NaN, and the diagnosis a non-finite gradient)."""
    from lightning.pytorch.plugins import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**15)
    module, callback = _fit(
        tmp_path, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)], gradient_clip_val=1.0
    )
    assert callback.monitor is not None
    trace = callback.monitor.trace
    skipped = trace.scalars["skipped"] == 1.0
    assert skipped.any() and (~skipped).sum() >= 2
    ref = module.ref.per_layer(trace.layer_names)
    assert_matches(trace.metrics["grad_norm"][~skipped], ref[~skipped])


def test_a_metric_name_the_trace_lacks_is_refused_at_construction() -> None:
    from gradientflow import GradientFlowError

    with pytest.raises(GradientFlowError, match="unknown per-layer column 'grad_nrom'"):
        GradientFlow(metrics=("grad_nrom",))


class _LossKeeper(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.losses.append(float(loss.detach()))
        return loss


def test_lightning_step_loss_is_the_mean_of_its_window_the_short_last_one_too(
    tmp_path: Path,
) -> None:
    """accumulate_grad_batches=3 over 7 batches an epoch: windows of 3, 3 and 1. Lightning
    divides every micro-batch's loss by 3, so the short window's sum read a third of its
    loss; each recorded loss is its window's mean."""
    torch.manual_seed(0)
    module = _LossKeeper()
    callback = GradientFlow(show=False, report=False)
    trainer = _trainer(tmp_path, callback, max_epochs=1, accumulate_grad_batches=3, logger=False)
    trainer.fit(module, _loader(8 * 7))
    assert callback.monitor is not None
    windows = [module.losses[0:3], module.losses[3:6], module.losses[6:7]]
    expected = [sum(w) / len(w) for w in windows]
    np.testing.assert_allclose(callback.monitor.trace.scalars["loss"], expected, rtol=1e-5)
