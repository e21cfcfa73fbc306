"""The passes: one forward and one backward pass at init, the model left exactly as it was.

Every weight layer (Linear, Conv, Bilinear) gets a forward hook for its first call: it records
the RMS of the layer's output ``s`` and hooks ``s`` for ``∂L/∂s``. Without a loss the probe is
``L = Σ out · r`` with ``r ~ N(0, 1)`` drawn from a private generator: the gains between layers
do not depend on the probe's scale. The gradients are taken with ``torch.autograd.grad``, so no
``.grad`` is written; buffers (BatchNorm running statistics), train/eval flags and the global
RNG state are restored afterwards, whatever happens.

The hooks also read how each layer's input was made (its autograd node): a *plain link* is
``φ(previous layer's output)`` with nothing else in between (reshapes and dropout aside), the
structure the mean-field theory describes. A norm, a pooling or a skip connection breaks it.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
>>> m = measure(model, torch.randn(32, 8))
>>> [(s.name, s.link) for s in m.layers]
[('0', None), ('2', 'tanh')]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.kinds import RECURRENT_LAYERS, WEIGHT_LAYERS, activation_of_node, is_transparent

#: Parameters an activation node must have for the theory's φ (default slopes only).
_DEFAULT_PARAMS = {"leaky_relu": ("_saved_negative_slope", 0.01), "elu": ("_saved_alpha", 1.0)}


@dataclass
class LayerStat:
    """What one weight layer looked like on the probe (``s`` is the layer's output)."""

    name: str
    kind: str
    link: str | None  # activation between the previous layer's output and this layer's input
    fan_in: int
    sigma_w2: float  # fan_in · Var(w)
    sigma_b2: float  # mean(b²), 0 without bias
    act_rms: float = float("nan")  # RMS of s
    grad_rms: float = float("nan")  # RMS of ∂L/∂s per element
    grad_sq: float = float("nan")  # ‖∂L/∂s‖², summed over the batch
    gain: float = float("nan")  # grad_sq / grad_sq of the next layer (what χ₁ predicts)
    #: False when no gradient reached ``s`` (a frozen layer, a loss that does not depend on
    #: it): the gradient fields are then NaN for "not measured", not for a non-finite value.
    measured: bool = True


@dataclass
class Measured:
    """The raw result of :func:`measure`."""

    layers: list[LayerStat]
    #: (name, module, output, steps) per recurrent layer, on its first call
    recurrent: list[tuple[str, nn.Module, torch.Tensor, int]] = field(default_factory=list)
    output_finite: bool = True
    loss: float = float("nan")


def _forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a model's output (tensor, tuple, dict, ``.logits``)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return [out.logits]
    items = (
        out.values() if isinstance(out, Mapping) else out if isinstance(out, tuple | list) else []
    )
    return [t for item in items for t in output_tensors(item)]


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Restore buffers, train/eval flags and the RNG state of ``model`` on the way out."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for m, training in modes:
                m.training = training


def _skip_transparent(node: Any) -> Any:
    while node is not None and is_transparent(node) and node.next_functions:
        node = node.next_functions[0][0]
    return node


def _link(node: Any, previous: Any) -> str | None:
    """The activation between ``previous`` (an output's node) and ``node`` (an input's)."""
    node = _skip_transparent(node)
    if node is None or previous is None:
        return None
    if node is previous:
        return "identity"
    name = activation_of_node(node)
    if name is None or not node.next_functions:
        return None
    attr = _DEFAULT_PARAMS.get(name)
    if attr is not None and abs(float(getattr(node, attr[0], attr[1])) - attr[1]) > 1e-9:
        return None
    return name if _skip_transparent(node.next_functions[0][0]) is previous else None


def _weight_stats(module: nn.Module) -> tuple[int, float, float]:
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    w = weight.detach()
    fan_in = int(w[0].numel()) if w.dim() > 1 else int(w.numel())
    bias = getattr(module, "bias", None)
    sb2 = float(bias.detach().double().pow(2).mean()) if isinstance(bias, torch.Tensor) else 0.0
    return fan_in, float(w.double().var(unbiased=False)) * fan_in, sb2


class _Recorder:
    """Forward hooks on the weight and recurrent layers; stats kept on the device."""

    def __init__(self, model: nn.Module) -> None:
        self.layers: list[LayerStat] = []
        self.act_sq: list[torch.Tensor] = []
        self.numel: list[int] = []
        self.grad_sq: dict[int, torch.Tensor] = {}
        self.recurrent: list[tuple[str, nn.Module, torch.Tensor, int]] = []
        self._nodes: list[Any] = []
        self._seen: set[int] = set()
        self.handles = [
            m.register_forward_hook(self._hook(n))
            for n, m in model.named_modules()
            if isinstance(m, WEIGHT_LAYERS + RECURRENT_LAYERS)
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if id(module) in self._seen:
                return
            self._seen.add(id(module))
            if isinstance(module, RECURRENT_LAYERS):
                self.recurrent.append((name, module, *_sequence(module, output[0])))
                return
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            x = inputs[0] if inputs else None
            previous = self._nodes[-1] if self._nodes else None
            link = _link(x.grad_fn, previous) if isinstance(x, torch.Tensor) else None
            fan_in, sw2, sb2 = _weight_stats(module)
            k = len(self.layers)
            self.layers.append(LayerStat(name, type(module).__name__, link, fan_in, sw2, sb2))
            self._nodes.append(output.grad_fn)
            self.act_sq.append(output.detach().float().pow(2).sum())
            self.numel.append(output.numel())
            if output.requires_grad:
                output.register_hook(lambda g: self._store(k, g))

        return hook

    def _store(self, k: int, grad: torch.Tensor) -> None:
        self.grad_sq[k] = grad.detach().float().pow(2).sum()

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def finish(self) -> list[LayerStat]:
        """Move the stats to the host in one batch and fill the layers in."""
        if not self.layers:
            return []
        nan = torch.tensor(float("nan"))
        acts = torch.stack([a.cpu() for a in self.act_sq]).tolist()
        grads = torch.stack([self.grad_sq.get(k, nan).cpu() for k in range(len(self.layers))])
        for k, (stat, a, g, n) in enumerate(
            zip(self.layers, acts, grads.tolist(), self.numel, strict=True)
        ):
            stat.measured = k in self.grad_sq
            stat.act_rms, stat.grad_sq = (a / n) ** 0.5 if n else float("nan"), g
            stat.grad_rms = (g / n) ** 0.5 if n else float("nan")
        for here, nxt in zip(self.layers, self.layers[1:], strict=False):
            here.gain = here.grad_sq / nxt.grad_sq if nxt.grad_sq > 0 else float("nan")
        return self.layers


def _sequence(module: nn.Module, output: Any) -> tuple[torch.Tensor, int]:
    """A recurrent layer's output sequence (a PackedSequence's data) and its number of steps."""
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return output.data.detach(), len(output.batch_sizes)
    if output.dim() == 2:  # unbatched: (steps, features)
        return output.detach(), int(output.shape[0])
    return output.detach(), int(output.shape[1 if getattr(module, "batch_first", False) else 0])


def _probe_loss(outs: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    total = outs[0].new_zeros((), dtype=torch.float32)
    for out in outs:
        r = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out.device, out.dtype)
        total = total + (out * r).sum().float()
    return total


def _loss(out: Any, loss_fn: Any, target: Any, gen: torch.Generator) -> torch.Tensor:
    outs = output_tensors(out)
    if not outs:
        raise GradientFlowError("preflight(): the model's output holds no floating-point tensor")
    if loss_fn is None:
        return _probe_loss(outs, gen)
    loss = loss_fn(out, target) if target is not None else loss_fn(out)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise GradientFlowError("preflight(): loss_fn must return a scalar tensor")
    return loss


def measure(
    model: nn.Module, example_input: Any, loss_fn: Any = None, target: Any = None, seed: int = 0
) -> Measured:
    """One forward and backward pass on ``example_input``; the model is left as it was."""
    if not isinstance(model, nn.Module):
        raise GradientFlowError(f"preflight(): `model` must be an nn.Module, got {type(model)}")
    gen = torch.Generator().manual_seed(seed)
    rec = _Recorder(model)
    x = example_input
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        x = x.detach().clone().requires_grad_(True)  # the cheapest end for the backward pass
    with untouched(model), torch.enable_grad():
        try:
            out = _forward(model, x)
            loss = _loss(out, loss_fn, target, gen)
            finite = all(bool(torch.isfinite(t).all()) for t in output_tensors(out))
            wrt = [x] if x is not example_input else []
            wrt = wrt or [p for p in model.parameters() if p.requires_grad]
            if loss.requires_grad and wrt:
                torch.autograd.grad(loss, wrt, allow_unused=True)
        finally:
            rec.close()
    return Measured(rec.finish(), rec.recurrent, finite, float(loss.detach()))
