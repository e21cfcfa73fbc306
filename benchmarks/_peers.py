"""The watchers compared by ``benchmarks/peers.py``: gradientflow and the peer tools' usual calls.

Each ``attach_*`` function installs one watcher on a :class:`Participant` (its per-step hook
and its closing call). A hook runs after ``backward()`` and before ``optimizer.step()``, where
a training loop (or Lightning's ``on_before_optimizer_step``) looks at gradients. Every watcher
also records the loss of each step, as its users do.

* ``gradientflow default`` / ``everything``: ``gradientflow.watch(model, opt, schedule=...)``
  and ``monitor.log(loss=loss)`` (the loss stays on the device);
* ``wandb.watch``: ``run.watch(model, log="all", log_freq=1)`` in offline mode (no network)
  and ``run.log({"loss": float(loss)})``, which commits the step's histograms;
* ``tensorboard hist``: ``SummaryWriter.add_histogram`` of every parameter's gradient and
  ``add_scalar`` of the loss, every step;
* ``lightning norms``: one ``torch.linalg.vector_norm`` per parameter's gradient, the total
  norm over them, and a dict of floats (the per-layer grad-norm logging of Lightning);
* ``.item() per param``: the norm of every parameter's gradient moved to the host one by one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from benchmarks._harness import Participant

import gradientflow
from gradientflow import Schedule

Attach = Callable[[Participant], None]
_STATE: dict[str, Any] = {}


def _gradientflow(schedule: Schedule | None) -> Attach:
    def attach(p: Participant) -> None:
        stack = contextlib.ExitStack()
        mon = stack.enter_context(gradientflow.watch(p.model, p.opt, schedule=schedule))
        p.hook = lambda step, loss: mon.log(loss=loss)
        p.close = stack.close

    return attach


def _wandb_run() -> Any:
    """One offline wandb run for the whole benchmark (system-metrics sampling off)."""
    if "wandb" not in _STATE:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        folder = tempfile.mkdtemp(prefix="gf-peers-wandb-")
        settings = wandb.Settings(mode="offline", console="off", x_disable_stats=True)
        _STATE["wandb"] = wandb.init(project="gradientflow-peers", dir=folder, settings=settings)
    return _STATE["wandb"]


def attach_wandb(p: Participant) -> None:
    run = _wandb_run()
    run.watch(p.model, log="all", log_freq=1)
    p.hook = lambda step, loss: run.log({"loss": float(loss)})
    p.close = lambda: run.unwatch(p.model)


def attach_tensorboard(p: Participant) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tempfile.mkdtemp(prefix="gf-peers-tb-"))
    named = [(n, q) for n, q in p.model.named_parameters() if q.requires_grad]

    def hook(step: int, loss: torch.Tensor) -> None:
        writer.add_scalar("loss", loss.item(), step)
        for name, q in named:
            if q.grad is not None:
                writer.add_histogram(f"grad/{name}", q.grad, step)

    p.hook = hook
    p.close = writer.close


def attach_lightning(p: Participant) -> None:
    named = [(n, q) for n, q in p.model.named_parameters() if q.requires_grad]
    logged: dict[str, float] = {}

    def hook(step: int, loss: torch.Tensor) -> None:
        norms = {
            f"grad_2.0_norm/{name}": torch.linalg.vector_norm(q.grad)
            for name, q in named
            if q.grad is not None
        }
        if norms:
            norms["grad_2.0_norm_total"] = torch.linalg.vector_norm(
                torch.stack(list(norms.values()))
            )
        logged.clear()
        logged.update({k: float(v) for k, v in norms.items()})
        logged["loss"] = float(loss)

    p.hook = hook


def attach_item(p: Participant) -> None:
    params = [q for q in p.model.parameters() if q.requires_grad]
    last: list[float] = []

    def hook(step: int, loss: torch.Tensor) -> None:
        last.clear()
        last.extend(q.grad.norm().item() for q in params if q.grad is not None)
        last.append(loss.item())

    p.hook = hook


def available(name: str) -> str | None:
    """Why watcher ``name`` cannot run here (a missing package), or None."""
    module = {"wandb.watch": "wandb", "tensorboard hist": "tensorboard"}.get(name)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install -r requirements-dev.txt)"
    return None


def finish() -> None:
    """Close the shared wandb run, if one was started."""
    run = _STATE.pop("wandb", None)
    if run is not None:
        run.finish()


WATCHERS: dict[str, Attach | None] = {
    "plain": None,
    "plain (A/A)": None,
    "gradientflow default": _gradientflow(None),
    "gradientflow everything": _gradientflow(Schedule.everything()),
    "wandb.watch": attach_wandb,
    "tensorboard hist": attach_tensorboard,
    "lightning norms": attach_lightning,
    ".item() per param": attach_item,
}
