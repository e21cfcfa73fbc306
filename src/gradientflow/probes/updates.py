"""The update norm ||dw|| per layer (the article's sign 1), measured as cheaply as possible.

* Plain SGD (any momentum and weight decay, no Nesterov, a float learning rate): the step is
  ``w -= lr * d`` where ``d`` is the momentum buffer (or the gradient when momentum is 0 and
  there is no weight decay), so ``||dw|| = lr * ||d||`` is read off the optimizer's state after
  the step: no copy of the weights.
* Any other optimizer: the parameters are copied before the step and subtracted after it, on
  full steps only (a full step comes every ``Schedule.full_every`` steps). For models up to
  :data:`KEEP_COPY_BYTES` the copy's memory is kept and refilled in place.
* Without an optimizer (``monitor.step()`` called by hand), the copy is taken at a full step and
  compared at the next call, which measures the update made in between.
"""

from __future__ import annotations

import torch

from gradientflow.distributed import local
from gradientflow.probes.layers import ParamIndex, foreach_norm

#: Up to this many bytes of parameters, the copy used to measure an update is kept between full
#: steps and refilled in place (no page faults); above it, it is allocated each time and freed.
KEEP_COPY_BYTES = 512 * 2**20


def update_norms_from(index: ParamIndex, before: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer ||w_now - w_before||; consumes ``before``."""
    torch._foreach_sub_(before, index.local_params())
    return index.per_layer(foreach_norm(before).square(), index.owner_idx, index.weight).sqrt()


def derivable_from_state(optimizer: torch.optim.Optimizer | None) -> bool:
    """True when ||dw|| can be derived from the optimizer's state without copying weights."""
    if type(optimizer) is not torch.optim.SGD:
        return False
    for group in optimizer.param_groups:
        if group.get("nesterov") or not isinstance(group.get("lr"), float):
            return False
        if group.get("momentum", 0) == 0 and group.get("weight_decay", 0) != 0:
            return False
    return True


class UpdateMeter:
    """Measures per-layer ||dw|| around one optimizer step."""

    def __init__(self, index: ParamIndex, optimizer: torch.optim.Optimizer | None) -> None:
        self.index = index
        self.optimizer = optimizer
        self.derived = derivable_from_state(optimizer)
        self.method = "derived from the SGD momentum buffer" if self.derived else "weight copy"
        self._before: list[torch.Tensor] | None = None
        self._kept: list[torch.Tensor] | None = None
        self._keep = sum(p.numel() * p.element_size() for p in index.params) <= KEEP_COPY_BYTES
        self._had_grad: list[bool] = []
        self._lr: dict[int, float] = {}

    def buffers(self) -> list[torch.Tensor] | None:
        """The kept copy that :meth:`before_step` fills, for a caller that fills it itself
        while it reads the weights anyway (``before_step(copied=True)`` then); None when the
        update is derived or the copy is not kept."""
        if self.derived or not self._keep:
            return None
        if self._kept is None:
            self._kept = [torch.empty_like(p) for p in self.index.local_params()]
        return self._kept

    def before_step(self, copied: bool = False) -> None:
        """Call before the optimizer step of a full step (``copied``: :meth:`buffers` holds
        the weights as they are now)."""
        self._had_grad = [p.grad is not None for p in self.index.params]
        if self.derived:
            assert self.optimizer is not None
            self._lr = {
                id(p): group["lr"] for group in self.optimizer.param_groups for p in group["params"]
            }
        else:
            self._before = self._kept if copied and self._kept is not None else self._copy()

    def _copy(self) -> list[torch.Tensor]:
        params = self.index.local_params()
        if self._kept is not None:
            torch._foreach_copy_(self._kept, params)
            return self._kept
        copy = [p.clone() for p in params]
        if self._keep:
            self._kept = copy
        return copy

    def pending(self) -> bool:
        return self._before is not None

    def after_step(self) -> torch.Tensor:
        """Call after the optimizer step; returns the per-layer update norm."""
        if not self.derived:
            before, self._before = self._before, None
            assert before is not None
            return update_norms_from(self.index, before)
        assert self.optimizer is not None
        vecs, lrs, owners, which = [], [], [], []
        for i, (p, had, owner) in enumerate(
            zip(self.index.params, self._had_grad, self.index.owner, strict=True)
        ):
            lr = self._lr.get(id(p))
            if not had or lr is None:
                continue
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            vec = buf if buf is not None else p.grad
            if vec is None:
                continue
            vecs.append(local(vec))
            lrs.append(lr)
            owners.append(owner)
            which.append(i)
        if not vecs:
            out = torch.zeros(self.index.n_layers, dtype=torch.float64, device=self.index.device)
            return self.index.shards.reduce(out)  # every rank takes part in the all-reduce
        scale = torch.tensor(lrs, dtype=torch.float64).to(self.index.device)
        norms = foreach_norm(vecs) * scale
        idx = torch.tensor(owners, dtype=torch.long).to(self.index.device)
        weight = self.index.weights_of(which)
        return self.index.per_layer(norms.square(), idx, weight).sqrt()

    def release(self) -> None:
        """Free the kept copy (at detach)."""
        self._kept = None

    def skipped(self) -> torch.Tensor:
        """The step did not happen (GradScaler found inf): nothing moved."""
        self._before = None
        return torch.zeros(self.index.n_layers, dtype=torch.float64, device=self.index.device)
