"""Forward-side statistics, measured on full steps only.

* At each layer's **input** (the consumer of an activation): which activation produced it, read
  from the autograd graph (so ``F.relu`` inside a ``forward`` counts as much as ``nn.ReLU``), the
  fraction of *dead* units (zero for every sample in the batch) and the fraction of *saturated*
  entries (within ``eps`` of a sigmoid's 0/1 or a tanh's -1/+1).
* At each layer's **output** s: its root mean square, and the norm of dL/ds back-propagated to
  it (a tensor hook), which is what Glorot & Bengio (2010) plot across depth.

A module called several times in one step (a recurrent cell in a loop, gradient accumulation)
contributes all its calls: norms are combined over the calls, fractions are taken over the
units and entries of all of them.
Statistics are taken only in training mode with gradients enabled, so a validation pass in
``eval()`` or under ``torch.no_grad()`` does not overwrite them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from gradientflow import kinds
from gradientflow.probes.base import Probe
from gradientflow.probes.hooks import Stopper, bound_hook, tensor_hook
from gradientflow.probes.layers import Layer, norm_sq

#: Trace.meta["activation_statistics"] of a compiled model (its forward is not hooked)
NOT_COMPILED = (
    "not measured: the model is compiled (no forward hooks: no activation, attention or "
    "through-time statistics)"
)

#: activations whose outputs are never negative: a unit's maximum over the batch says if it lives
_NON_NEGATIVE = frozenset({"relu", "relu6"})

__all__ = [
    "ActivationProbe",
    "input_counts",
    "input_stats",
    "producing_activation",
    "sequential_activations",
]


def producing_activation(t: torch.Tensor, max_hops: int = 4) -> str | None:
    """Name of the activation that produced ``t``, looking through reshapes and dropout."""
    fn = t.grad_fn
    for _ in range(max_hops):
        if fn is None:
            return None
        name = kinds.activation_of_node(fn)
        if name is not None:
            return name
        if not kinds.is_transparent(fn) or not fn.next_functions:
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
            kind = kinds.activation_of_module(child)
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


#: an input of at most this many entries takes the fewest-ops path of :func:`input_counts`
#: (a copy of ``|x|``); a larger one is read by reductions that copy nothing
FEW_ENTRIES = 1 << 14


def input_counts(
    x: torch.Tensor, activation: str, channel_first: bool, eps: float
) -> tuple[torch.Tensor, int, torch.Tensor | None, int]:
    """(live units, units, saturated entries, entries) of an activation tensor: the counts
    are int64 0-d tensors (no host read), the saturated count None where ``activation`` has
    no saturation limits.

    A unit (a channel of a channel-first input, else a last-dim feature) is alive when any
    sample is nonzero (a NaN keeps it alive): its largest ``|x|`` over the batch is not 0,
    which a large input answers without a copy (largest and smallest values), and after a
    non-negative activation (ReLU and kin) the largest value alone. An entry is saturated
    within ``eps`` of a sigmoid's 0/1 or a tanh's -1/+1. Each count is one reduction: a
    2,000-layer net's 2,000 calls a full step pay few tensor operations each.

    >>> x = torch.tensor([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]])
    >>> alive, units, sat, entries = input_counts(x, "tanh", False, 0.01)
    >>> int(alive), units, int(sat), entries
    (2, 3, 2, 6)
    """
    x = x.detach()
    if x.dim() == 0:
        x = x.reshape(1, 1)
    unit = 1 if (x.dim() >= 2 and channel_first) else x.dim() - 1
    dims = [d for d in range(x.dim()) if d != unit]
    units = x.shape[unit] if dims else x.numel()
    limits = kinds.SATURATION_LIMITS.get(activation)
    mid, half = 0.0, 0.0
    if limits is not None:
        mid, half = (limits[0] + limits[1]) / 2, (limits[1] - limits[0]) / 2 - eps
    magnitude: torch.Tensor | None = None  # |x|, where copied
    if activation in _NON_NEGATIVE:
        largest = torch.amax(x, dim=dims) if dims else x
    elif x.numel() <= FEW_ENTRIES or not dims:
        magnitude = x.abs()
        largest = torch.amax(magnitude, dim=dims) if dims else magnitude
    else:
        largest = torch.amax(x, dim=dims).abs_().add_(torch.amin(x, dim=dims).abs_())
    alive = torch.count_nonzero(largest)
    if limits is None:
        return alive, units, None, x.numel()
    if magnitude is None or mid != 0.0:
        magnitude = (x - mid).abs_()
    return alive, units, torch.count_nonzero(magnitude.ge_(half)), x.numel()


def input_stats(
    x: torch.Tensor, activation: str, channel_first: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dead fraction, saturated fraction) of an activation tensor, as float64 0-d tensors
    (see :func:`input_counts`).

    >>> x = torch.tensor([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]])
    >>> [round(float(v), 4) for v in input_stats(x, "tanh", False, 0.01)]
    [0.3333, 0.3333]
    """
    alive, units, sat, entries = input_counts(x, activation, channel_first, eps)
    dead = 1.0 - alive.to(torch.float64) / units
    if sat is None:
        return dead, torch.zeros((), dtype=torch.float64, device=x.device)
    return dead, sat.to(torch.float64) / entries


class ActivationProbe(Probe):
    """Input and output statistics of every layer, from forward hooks installed only for the
    forward passes of full steps (:meth:`prepare`) and removed in between: a module with hooks
    takes PyTorch's slower call path, which other steps should not pay for.

    >>> from torch.nn import Linear, Sequential, Sigmoid
    >>> from gradientflow.probes.layers import Watched, candidate_modules
    >>> model = Sequential(Linear(2, 3), Sigmoid(), Linear(3, 1))
    >>> _ = torch.nn.init.constant_(model[0].weight, 1.0)  # every sigmoid saturates
    >>> watched = Watched(model, None, candidate_modules(model)); watched.build({})
    >>> probe = ActivationProbe(); probe.attach(watched); probe.prepare(0, True)
    >>> model(torch.full((4, 2), 100.0)).sum().backward()
    >>> stats = probe.on_step(0, True); probe.detach()
    >>> stats["in_sat_frac"].tolist()[1], probe.input_activations()
    (1.0, {1: 'sigmoid'})
    """

    layer_columns: ClassVar[Mapping[str, str]] = {
        "in_dead_frac": "fraction of input units that are zero for every sample (dead ReLUs)",
        "in_sat_frac": "fraction of input activations within eps of a sigmoid/tanh limit",
        "out_grad_norm": "L2 norm of dL/ds, the gradient back-propagated to the layer's output",
        "out_rms": "root mean square of the layer's output",
    }

    def __init__(self, saturation_eps: float = 0.01) -> None:
        self.eps = saturation_eps
        self.modules: list[nn.Module] = []
        self.fallback: dict[int, str] = {}  # id(module) -> activation, sequential_activations()
        self.stopper = Stopper("activation statistics")
        self._handles: list[Any] = []
        self.activation: dict[int, str] = {}  # module index -> producing activation (first seen)
        self.reset()

    def attach(self, watched: Any = None) -> None:
        super().attach(watched)
        self.modules = [m for _, m in watched.candidates]
        self.fallback = sequential_activations(watched.model)

    def reset(self) -> None:
        self._alive: dict[int, list[torch.Tensor]] = defaultdict(list)  # live units, per call
        self._units: dict[int, int] = defaultdict(int)
        self._sat: dict[int, list[torch.Tensor]] = defaultdict(list)  # saturated entries
        self._entries: dict[int, int] = defaultdict(int)
        self._out_sq: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._out_n: dict[int, int] = defaultdict(int)
        self._grad_sq: dict[int, list[torch.Tensor]] = defaultdict(list)

    def prepare(self, step: int, full: bool) -> None:
        """Hooks for the forward pass of a full step only (never on a compiled model: a hook
        traced into its graph breaks it, one added later is not called)."""
        if full and not self.stopper.stopped and not self.watched.compiled:
            self.arm()
        else:
            self.disarm()

    def arm(self) -> None:
        """Install the hooks (idempotent)."""
        if self._handles:
            return
        for j, module in enumerate(self.modules):
            pre = bound_hook(module, self.stopper, self._pre_hook(j, module), self._compiled)
            post = bound_hook(module, self.stopper, self._post_hook(j), self._compiled)
            self._handles.append(module.register_forward_pre_hook(pre))
            self._handles.append(module.register_forward_hook(post))

    def disarm(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def detach(self) -> None:
        self.disarm()
        self.reset()

    @staticmethod
    def _active(module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _pre_hook(self, j: int, module: nn.Module) -> Any:
        channel_first = isinstance(module, kinds.CHANNEL_FIRST)

        def hook(mod: nn.Module, args: Any) -> None:
            if not self._active(mod):
                return
            x = _first_tensor(args)
            if x is None or not x.is_floating_point() or x.numel() == 0:
                return  # nothing to measure (an empty batch, a zero-width input)
            act = producing_activation(x)
            if act is None and x.grad_fn is None:
                act = self.fallback.get(id(mod))
            if act is None:
                return
            alive, units, sat, entries = input_counts(x, act, channel_first, self.eps)
            self.activation.setdefault(j, act)
            self._alive[j].append(alive)
            self._units[j] += units
            if sat is not None:
                self._sat[j].append(sat)
            self._entries[j] += entries

        return hook

    def _post_hook(self, j: int) -> Any:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if not self._active(mod):
                return
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            o = out.detach()
            out_sq = norm_sq(o)
            if out.requires_grad:
                out.register_hook(tensor_hook(self.stopper, self._grad_hook(j)))
            self._out_sq[j].append(out_sq)
            self._out_n[j] += o.numel()

        return hook

    def _grad_hook(self, j: int) -> Any:
        def hook(grad: torch.Tensor) -> None:
            self._grad_sq[j].append(norm_sq(grad.detach()))

        return hook

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        if not full or self.stopper.stopped:
            self.reset()
            return {}
        return self.collect(self.watched.order, self.watched.index.device)

    def input_activations(self) -> dict[int, str]:
        """Layer index -> the activation that produced its input (where one was seen)."""
        order = self.watched.order
        return {j: self.activation[m] for j, m in enumerate(order) if m in self.activation}

    def annotate(self, layers: list[Layer]) -> None:
        for layer, m in zip(layers, self.watched.order, strict=True):
            layer.input_activation = self.activation.get(m)

    def meta(self) -> dict[str, Any]:
        if self.watched is not None and self.watched.compiled:
            return {"saturation_eps": self.eps, "activation_statistics": NOT_COMPILED}
        return {"saturation_eps": self.eps}

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

        def per_layer(d: dict[int, int]) -> torch.Tensor:
            values = [float(d.get(m, 0)) for m in order]
            return torch.tensor(values, dtype=torch.float64).to(device)

        alive, _ = sums(self._alive)
        sat, _ = sums(self._sat)
        grad_sq, n_grad = sums(self._grad_sq)
        out_sq, _ = sums(self._out_sq)
        n_out = per_layer(self._out_n)
        out = {
            "in_dead_frac": 1.0 - alive / per_layer(self._units),  # 0/0: NaN, nothing measured
            "in_sat_frac": sat / per_layer(self._entries),
            "out_grad_norm": (grad_sq / (n_grad > 0)).sqrt(),
            "out_rms": (out_sq / n_out).sqrt(),
        }
        self.reset()
        return out
