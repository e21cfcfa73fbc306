"""A tiny training watched under DDP and FSDP2 (run by tests/test_distributed.py).

``torchrun --nproc_per_node=2 tests/dist_train.py OUT`` trains the same MLP on the same global
batches three times (DDP, DDP with ``ranks="all"``, FSDP2), each rank on its half of every
batch, and writes ``OUT/rank{r}.json``: the per-layer gradient norms the monitor recorded and
those computed from ``p.grad`` in the training loop just before ``optimizer.step()`` (full
tensors). :func:`train` with no process group is the one-process reference on whole batches.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import gradientflow
from gradientflow.schedule import Schedule

STEPS, BATCH = 6, 16


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(BATCH, 8, generator=gen) * 3, torch.randn(BATCH, 4, generator=gen))
        for _ in range(STEPS)
    ]


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t  # type: ignore[no-any-return]


def layer_grad_norms(model: nn.Module) -> list[float]:
    """Per-layer (module owning parameters) norm of the full gradients, in order."""
    out = []
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if p.grad is not None]
        if own:
            sq = sum(full(p.grad).double().square().sum() for p in own)  # type: ignore[misc]
            out.append(float(torch.as_tensor(sq).sqrt()))
    return out


def train(wrap: str, log_dir: str | None, ranks: str | int = 0) -> dict[str, Any]:
    """Train; ``wrap`` is "none" (one process, whole batches), "ddp" or "fsdp"."""
    rank, size = (dist.get_rank(), dist.get_world_size()) if wrap != "none" else (0, 1)
    inner = make_model()
    model: nn.Module = inner
    if wrap == "ddp":
        model = nn.parallel.DistributedDataParallel(inner)
    elif wrap == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (size,))
        for layer in inner:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(inner, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    expected = []
    options: dict[str, Any] = {"schedule": Schedule.everything(), "ranks": ranks}
    with gradientflow.watch(model, opt, log_dir=log_dir, **options) as mon:
        for x, y in batches():
            part = slice(rank * BATCH // size, (rank + 1) * BATCH // size)
            opt.zero_grad()
            loss = (model(x[part]) - y[part]).pow(2).mean()
            loss.backward()
            expected.append(layer_grad_norms(inner))
            mon.log(loss=loss)
            opt.step()
    trace = mon.trace
    return {
        "names": [layer.name for layer in trace.layers],
        "recorded": trace.metrics["grad_norm"].tolist(),
        "expected": expected,
        "steps": trace.steps.tolist(),
        "weight_norm": trace.metrics["weight_norm"].tolist(),
        "update_norm": trace.metrics["update_norm"].tolist(),
        "recording_error": trace.meta.get("recording_error"),
    }


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    result = {
        "ddp": train("ddp", os.path.join(out, "ddp")),
        "ddp_all": train("ddp", os.path.join(out, "ddp_all"), ranks="all"),
        "fsdp": train("fsdp", os.path.join(out, "fsdp")),
    }
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    # Every rank done before any tears down, then exit without the interpreter's finalization:
    # a gloo worker thread still holding a tensor when Python shuts down aborts the process
    # now and then (SIGABRT, "terminate called without an active exception", about 1 launch in
    # 40 on a loaded 2-core machine) after both results were written.
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
