"""Forward-side statistics, measured on full steps only.

* At each layer's **input** (the consumer of an activation): which activation produced it, read
  from the autograd graph (so ``F.relu`` inside a ``forward`` counts as much as ``nn.ReLU``), the
  fraction of *dead* units (zero for every sample in the batch) and the fraction of *saturated*
  entries (within ``eps`` of a sigmoid's 0/1 or a tanh's -1/+1).
* At each layer's **output** s: its root mean square, and the norm of dL/ds back-propagated to
  it (a tensor hook), which is what Glorot & Bengio (2010) plot across depth.

A module called several times in one step (a recurrent cell in a loop, gradient accumulation)
contributes all its calls: norms are combined over the calls, fractions averaged.
Statistics are taken only in training mode with gradients enabled, so a validation pass in
``eval()`` or under ``torch.no_grad()`` does not overwrite them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

#: autograd node name -> activation name
_ACTIVATIONS = {
    "ReluBackward0": "relu",
    "ReluBackward1": "relu",
    "ThresholdBackward0": "relu",
    "SigmoidBackward0": "sigmoid",
    "TanhBackward0": "tanh",
    "LeakyReluBackward0": "leaky_relu",
    "LeakyReluBackward1": "leaky_relu",
    "EluBackward0": "elu",
    "EluBackward1": "elu",
    "PreluKernelBackward0": "prelu",
    "PreluBackward0": "prelu",
    "GeluBackward0": "gelu",
    "SiluBackward0": "silu",
    "HardtanhBackward0": "hardtanh",
    "SoftplusBackward0": "softplus",
    "MishBackward0": "mish",
}
#: nodes that pass an activation through unchanged in kind (reshapes, dropout)
_TRANSPARENT = {
    "NativeDropoutBackward0",
    "ViewBackward0",
    "UnsafeViewBackward0",
    "ReshapeAliasBackward0",
    "CloneBackward0",
    "TransposeBackward0",
    "PermuteBackward0",
    "SqueezeBackward0",
    "SqueezeBackward1",
    "UnsqueezeBackward0",
    "AliasBackward0",
    "ToCopyBackward0",
    "ExpandBackward0",
}
#: activation module -> activation name, for inputs that carry no autograd graph (a frozen,
#: no-grad stretch of the model): then the module just before the layer in an nn.Sequential tells
_ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
    nn.SELU: "elu",
    nn.PReLU: "prelu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Hardtanh: "hardtanh",
    nn.ReLU6: "hardtanh",
    nn.Softplus: "softplus",
    nn.Mish: "mish",
}
_SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)


def producing_activation(t: torch.Tensor, max_hops: int = 4) -> str | None:
    """Name of the activation that produced ``t``, looking through reshapes and dropout."""
    fn = t.grad_fn
    for _ in range(max_hops):
        if fn is None:
            return None
        name = type(fn).__name__
        if name in _ACTIVATIONS:
            return _ACTIVATIONS[name]
        if name not in _TRANSPARENT or not fn.next_functions:
            return None
        fn = fn.next_functions[0][0]
    return None


def sequential_activations(model: nn.Module) -> dict[int, str]:
    """``id(module) -> activation`` for modules that follow an activation in an nn.Sequential."""
    out: dict[int, str] = {}
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        last: str | None = None
        for child in parent:
            if any(True for _ in child.parameters(recurse=False)) and last is not None:
                out[id(child)] = last
            kind = _ACTIVATION_MODULES.get(type(child))
            if kind is not None:
                last = kind
            elif not isinstance(child, nn.Dropout | nn.Flatten | nn.Identity):
                last = None
    return out


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, tuple | list) and x:
        return _first_tensor(x[0])
    if hasattr(x, "data") and isinstance(x.data, torch.Tensor):  # PackedSequence
        return x.data
    return None


def input_stats(
    x: torch.Tensor, activation: str, channel_first: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dead fraction, saturated fraction) of an activation tensor, as float64 0-d tensors."""
    x = x.detach()
    if x.dim() >= 2 and channel_first:
        units = x.transpose(0, 1).reshape(x.shape[1], -1).t()
    else:
        units = x.reshape(-1, x.shape[-1]) if x.dim() >= 1 else x.reshape(1, 1)
    alive = (units != 0).any(dim=0)
    dead = 1.0 - alive.to(torch.float64).mean()
    limits = _SATURATING.get(activation)
    if limits is None:
        sat = torch.zeros((), dtype=torch.float64, device=x.device)
    else:
        lo, hi = limits
        sat = ((units <= lo + eps) | (units >= hi - eps)).to(torch.float64).mean()
    return dead, sat


class ActivationProbe:
    """Forward pre/post hooks on every layer, installed only for the forward passes of full
    steps (:meth:`arm`) and removed in between (:meth:`disarm`): a module with hooks takes
    PyTorch's slower call path, which other steps should not pay for."""

    def __init__(
        self, modules: list[nn.Module], saturation_eps: float, fallback: dict[int, str]
    ) -> None:
        self.modules = modules
        self.fallback = fallback  # id(module) -> activation, from sequential_activations()
        self.eps = saturation_eps
        self._handles: list[Any] = []
        self.activation: dict[int, str] = {}  # module index -> producing activation (first seen)
        self.reset()

    def reset(self) -> None:
        self._dead: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._sat: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._out_sq: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._out_n: dict[int, int] = defaultdict(int)
        self._grad_sq: dict[int, list[torch.Tensor]] = defaultdict(list)

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        """Install the hooks (idempotent)."""
        if self._handles:
            return
        for j, module in enumerate(self.modules):
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(j, module)))
            self._handles.append(module.register_forward_hook(self._post_hook(j)))

    def disarm(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def _active(module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _pre_hook(self, j: int, module: nn.Module) -> Any:
        channel_first = isinstance(module, _CHANNEL_FIRST)

        def hook(mod: nn.Module, args: Any) -> None:
            if not self._active(mod):
                return
            x = _first_tensor(args)
            if x is None or not x.is_floating_point():
                return
            act = producing_activation(x)
            if act is None and x.grad_fn is None:
                act = self.fallback.get(id(mod))
            if act is None:
                return
            self.activation.setdefault(j, act)
            dead, sat = input_stats(x, act, channel_first, self.eps)
            self._dead[j].append(dead)
            self._sat[j].append(sat)

        return hook

    def _post_hook(self, j: int) -> Any:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if not self._active(mod):
                return
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            o = out.detach()
            self._out_sq[j].append(o.to(torch.float64).square().sum())
            self._out_n[j] += o.numel()
            if out.requires_grad:
                out.register_hook(self._grad_hook(j))

        return hook

    def _grad_hook(self, j: int) -> Any:
        def hook(grad: torch.Tensor) -> None:
            self._grad_sq[j].append(
                torch.linalg.vector_norm(grad.detach(), dtype=torch.float64).square()
            )

        return hook

    def collect(self, order: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        """Per-layer vectors of what was measured since the last reset (NaN where nothing).

        ``order[j]`` is the index (in the list given at construction) of layer j's module.
        Each statistic is reduced with one ``index_add_``, whatever the number of layers.
        """
        position = {m: j for j, m in enumerate(order)}

        def sums(d: dict[int, list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
            values: list[torch.Tensor] = []
            index: list[int] = []
            counts = [0] * len(order)
            for m, items in d.items():
                j = position.get(m)
                if j is not None and items:
                    values += items
                    index += [j] * len(items)
                    counts[j] += len(items)
            total = torch.zeros(len(order), dtype=torch.float64, device=device)
            if values:
                idx = torch.tensor(index, dtype=torch.long).to(device)
                total.index_add_(0, idx, torch.stack(values).to(device, torch.float64))
            return total, torch.tensor(counts, dtype=torch.float64).to(device)

        dead, n_dead = sums(self._dead)
        sat, n_sat = sums(self._sat)
        grad_sq, n_grad = sums(self._grad_sq)
        out_sq, _ = sums(self._out_sq)
        n_out = torch.tensor([float(self._out_n.get(m, 0)) for m in order], dtype=torch.float64)
        out = {
            "in_dead_frac": dead / n_dead,  # 0/0 = NaN where nothing was measured
            "in_sat_frac": sat / n_sat,
            "out_grad_norm": (grad_sq / (n_grad > 0)).sqrt(),
            "out_rms": (out_sq / n_out.to(device)).sqrt(),
        }
        self.reset()
        return out
