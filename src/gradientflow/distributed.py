"""Where training runs on several processes: wrappers, sharded parameters, who writes.

* **Wrappers** (``DistributedDataParallel``'s ``module``, ``torch.compile``'s ``_orig_mod``)
  are looked through: layers are named as in the user's model, without ``module.`` or
  ``_orig_mod.``.
* **torch.compile**: the compiled graph does not call module hooks added after it was traced
  (and a hook traced into it breaks the graph), so on a compiled model the activation
  statistics (``in_dead_frac``, ``in_sat_frac``, ``out_rms``, ``out_grad_norm``) are not
  measured; everything read at the optimizer step, outside the compiled region, is.
* **DDP**: every rank holds the whole gradient, all-reduced by DDP's backward before the
  optimizer step where the monitor reads it, so per-layer norms are computed locally and no
  collective is issued.
* **Sharded parameters** (FSDP2's ``fully_shard``: DTensor parameters and gradients): each rank
  sums the squares of its local shards per layer; the per-layer vector is all-reduced once per
  statistic, so the recorded norms are full-tensor norms. Every rank must therefore record the
  same steps (they do: all ranks step together and share the schedule). Activation
  statistics are those of each rank's own micro-batch (not aggregated over ranks).
* **Who writes**: under an initialised process group with more than one process, only rank 0
  writes ``log_dir`` and ``tensorboard`` by default; every rank keeps its trace in memory.
  ``watch(..., ranks="all")`` makes every rank write ``log_dir/rank{r}``.

>>> unwrap(torch.nn.Linear(2, 2)).__class__.__name__
'Linear'
>>> rank_dir("runs/a", 1)
'runs/a/rank1'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gradientflow.errors import GradientFlowError

_WRAPPED = ("module", "_orig_mod")  # DDP / DataParallel, torch.compile's OptimizedModule


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP, DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
            inner = model._orig_mod
            assert isinstance(inner, nn.Module)
            model = inner
        else:
            return model


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` (or a module in it) runs through ``torch.compile``: a wrapper from
    ``torch.compile(model)`` or a module compiled in place with ``module.compile()``."""
    if type(model).__name__ == "OptimizedModule":
        return True
    inner = unwrap(model)
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in inner.modules())


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_dir(path: str | os.PathLike[str], rank: int) -> str:
    return os.path.join(os.fspath(path), f"rank{rank}")


def writes_here(ranks: str | int) -> bool:
    """Whether this process writes the run directory for ``watch(..., ranks=)``."""
    if ranks != "all" and (not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 0):
        raise GradientFlowError(f"watch(): `ranks` must be 'all' or a rank number, got {ranks!r}")
    rank, size = world()
    return ranks == "all" or size == 1 or rank == ranks


def local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor, the tensor itself otherwise."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) and _is_dtensor(t) else t


def _is_dtensor(t: Any) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "placements")


class Shards:
    """How the per-parameter local sums of one model's parameters add up to full-tensor sums.

    ``weight[i]`` is the share of parameter i's local sum that counts: 1 for a shard, 1/n for a
    tensor replicated on n ranks (so the all-reduce counts it once).
    """

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        meshes = {id(p.device_mesh): p.device_mesh for p in params if _is_dtensor(p)}  # type: ignore[attr-defined]
        self.group: Any = None
        self.weight: list[float] = [1.0] * len(params)
        if not meshes:
            return
        if len(meshes) > 1:
            raise GradientFlowError(
                "watch(): the model's DTensor parameters live on several device meshes; "
                "gradientflow follows one mesh per model"
            )
        mesh = next(iter(meshes.values()))
        if mesh.ndim == 1:
            self.group = mesh.get_group()
        elif mesh.size() == dist.get_world_size():
            self.group = dist.group.WORLD
        else:
            raise GradientFlowError(
                f"watch(): a {mesh.ndim}-d device mesh of {mesh.size()} ranks that is not the "
                f"whole world ({dist.get_world_size()}) is not supported"
            )
        n = mesh.size()
        self.weight = [_share(p, n) for p in params]

    @property
    def sharded(self) -> bool:
        return self.group is not None

    def reduce(self, per_layer: torch.Tensor) -> torch.Tensor:
        """Sum a per-layer vector of local contributions over the ranks (in place)."""
        if self.group is not None:
            dist.all_reduce(per_layer, group=self.group)
        return per_layer


def _share(p: torch.Tensor, mesh_size: int) -> float:
    """The weight of a parameter's local sum: 1 / (number of ranks holding the same entries)."""
    if not _is_dtensor(p):
        return 1.0 / mesh_size
    replicas = 1
    for dim, placement in enumerate(p.placements):  # type: ignore[attr-defined]
        if not placement.is_shard():
            replicas *= p.device_mesh.size(dim)  # type: ignore[attr-defined]
    return 1.0 / replicas


def outputs_here(
    log_dir: str | os.PathLike[str] | None,
    tensorboard: str | os.PathLike[str] | None,
    warn: bool,
    ranks: str | int,
) -> tuple[str | os.PathLike[str] | None, str | os.PathLike[str] | None, bool]:
    """``watch()``'s outputs for this process: all of them on the writing rank (or in
    ``rank{r}`` subfolders with ``ranks="all"``), none elsewhere (the trace stays in memory).

    >>> outputs_here("runs/a", None, True, ranks=0)
    ('runs/a', None, True)
    >>> outputs_here("runs/a", None, True, ranks="rank0")
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: watch(): `ranks` must be 'all' or a rank number, \
got 'rank0'
    """
    rank, size = world()
    if not writes_here(ranks):
        return None, None, False
    if ranks == "all" and size > 1:
        log_dir = rank_dir(log_dir, rank) if log_dir is not None else None
        tensorboard = rank_dir(tensorboard, rank) if tensorboard is not None else None
    return log_dir, tensorboard, warn
