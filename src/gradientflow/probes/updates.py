"""The update norm ||dw|| per layer (the article's sign 1), measured as cheaply as possible.

* Plain SGD (any momentum and weight decay, no Nesterov, a float learning rate) on float32 or
  float64 weights: the step is ``w -= lr * d`` where ``d`` is the momentum buffer (or the
  gradient when momentum is 0 and there is no weight decay), so ``||dw|| = lr * ||d||`` is
  read off the optimizer's state after the step: no copy of the weights. Exact to the
  weights' rounding, which is negligible unless the update is near their resolution (a
  relative update below about 1e-6 in float32). bfloat16 and float16 weights round away
  updates below 2**-8 (2**-11) of their size, often a whole layer's: they take the copy.
* Any other optimizer: the parameters are copied before the step and subtracted after it, on
  full steps only (a full step comes every ``Schedule.full_every`` steps). For models up to
  :data:`KEEP_COPY_BYTES` the copy's memory is kept and refilled in place.
* Without an optimizer (``monitor.step()`` called by hand), the copy is taken at a full step and
  compared at the next call, which measures the update made in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradientflow.distributed import local
from gradientflow.probes.layers import ParamIndex, foreach_norm

#: Up to this many bytes of parameters, the copy used to measure an update is kept between full
#: steps and refilled in place (no page faults); above it, it is allocated each time and freed.
KEEP_COPY_BYTES = 512 * 2**20


def copy_dtype(p: torch.Tensor) -> torch.dtype:
    """The dtype of the copy that measures ``p``'s update: float32 for a half-precision
    weight, in which the difference of two of its values is exact (in the weight's own
    dtype it is rounded to 8 or 11 bits), else the weight's own.

    >>> copy_dtype(torch.ones(1, dtype=torch.bfloat16)), copy_dtype(torch.ones(1))
    (torch.float32, torch.float32)
    """
    return torch.float32 if p.dtype in (torch.bfloat16, torch.float16) else p.dtype


def update_norms_from(index: ParamIndex, before: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer ||w_now - w_before||; consumes ``before`` (see :func:`copy_dtype`)."""
    torch._foreach_sub_(before, index.local_params())
    return index.per_layer(foreach_norm(before).square(), index.owner_idx, index.weight).sqrt()


#: weight dtypes whose SGD step moves them by ``lr * d`` to within negligible rounding
_DERIVABLE_DTYPES = (torch.float32, torch.float64)


def derivable_from_state(
    optimizer: torch.optim.Optimizer | None, params: Sequence[torch.Tensor] = ()
) -> bool:
    """True when ||dw|| can be derived from the optimizer's state without copying weights:
    plain SGD (see the module's docstring) and no ``params`` in half precision.

    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> derivable_from_state(torch.optim.SGD([w], lr=0.1), [w])
    True
    >>> half = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    >>> derivable_from_state(torch.optim.SGD([half], lr=0.1), [half])
    False
    """
    if type(optimizer) is not torch.optim.SGD:
        return False
    if any(p.dtype not in _DERIVABLE_DTYPES for p in params):
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
        self.derived = derivable_from_state(optimizer, index.params)
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
            self._kept = [
                torch.empty_like(p, dtype=copy_dtype(p)) for p in self.index.local_params()
            ]
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
        copy = [p.detach().to(copy_dtype(p), copy=True) for p in params]
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
