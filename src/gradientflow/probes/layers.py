"""What a *layer* is, and in what order layers come.

A layer is a module that owns parameters directly (``recurse=False``): its weight and bias are
measured together. Layers are ordered by depth, i.e. by the order in which the forward pass
first calls them, not by registration order. A module whose weights its parent uses without
calling it (``nn.MultiheadAttention``'s ``out_proj``, used through
``F.multi_head_attention_forward``) is placed where its parent's call ends. A parameter shared
by several modules (tied weights) belongs to the first of them in depth order and counts once;
a later module sharing it is marked ``tied_to`` that layer (a tied language-model head).
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.distributed import Shards, is_compiled, local, unwrap
from gradientflow.errors import GradientFlowError
from gradientflow.probes.hooks import Stopper, bound_hook
from gradientflow.schedule import Schedule
from gradientflow.trace import LayerInfo


@dataclass
class Layer:
    """A layer and the parameters counted for it."""

    name: str
    module: nn.Module
    params: list[nn.Parameter] = field(default_factory=list)
    trainable: bool = True
    input_activation: str | None = None
    tied_to: str | None = None

    def info(self) -> LayerInfo:
        return LayerInfo(
            name=self.name,
            kind=type(self.module).__name__,
            n_params=sum(p.numel() for p in self.params),
            trainable=self.trainable,
            input_activation=self.input_activation,
            tied_to=self.tied_to,
        )


def candidate_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration order, each module once."""
    found = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            found.append((name or type(model).__name__, module))
    if not found:
        raise GradientFlowError(
            f"watch(): the model ({type(model).__name__}) has no parameters, so there is no "
            "gradient to follow"
        )
    return found


def build_layers(
    candidates: list[tuple[str, nn.Module]],
    first_use: dict[int, int],
    optimizer_params: set[int] | None,
    end_use: dict[str, int] | None = None,
) -> list[Layer]:
    """Order candidates by first use and give each parameter to exactly one layer.

    ``end_use`` maps module names to the count of first uses seen when their call ended: a
    module never called sits where its nearest called ancestor's call ended. Modules with
    neither keep their registration order, after the used ones. ``optimizer_params`` (ids)
    marks layers none of whose parameters the optimizer updates as not trainable.
    """
    order = sorted(
        range(len(candidates)),
        key=lambda i: (_position(candidates[i], first_use, end_use or {}), i),
    )
    owner: dict[int, str] = {}
    layers: list[Layer] = []
    for i in order:
        name, module = candidates[i]
        mine = list(module.parameters(recurse=False))
        params = [p for p in mine if id(p) not in owner]
        if not params:
            continue  # every parameter is tied to an earlier layer
        tied = next((owner[id(p)] for p in mine if id(p) in owner), None)
        owner.update((id(p), name) for p in params)
        layer = Layer(name, module, params, _trainable(params, optimizer_params), tied_to=tied)
        layers.append(layer)
    return layers


def _position(
    candidate: tuple[str, nn.Module], first_use: dict[int, int], end_use: dict[str, int]
) -> float:
    """Where a module sits in the forward pass: its first call, or (never called) just before
    the first call after its nearest called ancestor's call ended; never seen: at the end."""
    name, module = candidate
    if id(module) in first_use:
        return float(first_use[id(module)])
    parts = name.split(".")
    for k in range(len(parts) - 1, -1, -1):
        ancestor = ".".join(parts[:k])
        if ancestor in end_use:
            return end_use[ancestor] - 0.5
    return float("inf")


def _trainable(params: Iterable[nn.Parameter], optimizer_params: set[int] | None) -> bool:
    return any(
        p.requires_grad and (optimizer_params is None or id(p) in optimizer_params) for p in params
    )


def optimizer_param_ids(optimizer: torch.optim.Optimizer | None) -> set[int] | None:
    if optimizer is None:
        return None
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def dense(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t.coalesce().values() if t.is_sparse else t for t in tensors]


#: Float32 norms inside this range are exact to float32 rounding; outside it (overflow of the
#: sum of squares, or squares lost below float32's smallest normal) they are redone in float64.
SAFE_NORM_RANGE = (1e-15, 1e15)
_FAST = (torch.float32, torch.float64)  # CPU dtypes whose own norm keeps float32 precision


def foreach_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor, stacked into one float64 vector (on the tensors' device).

    Accumulated in float64 where it matters: in float32 the sum of squares overflows for norms
    above ~1.8e19 (a finite gradient would read as Inf) and loses squares below ~1e-19. On the
    GPU one fused float64 ``_foreach_norm`` does it. On the CPU, where a float64 norm converts
    the whole tensor first (a copy 20x slower than the norm), each norm is taken in the
    tensor's own dtype and only the few outside :data:`SAFE_NORM_RANGE` (Inf, NaN, zero, tiny,
    huge) are redone in float64: one read of a small host vector, no device sync on a CPU.

    >>> foreach_norm([torch.tensor([3.0, 4.0]), torch.full((4,), 2.0**100)]).tolist() == [5, 2**101]
    True
    """
    # The checks read one attribute of every tensor through map() (C calls): a 2,000-layer
    # net's 4,000 gradients take 1 ms here, against 4.6 ms for a Python test per tensor.
    dense_ = dense(tensors) if any(map(_IS_SPARSE, tensors)) else list(tensors)
    dtypes = set(map(_DTYPE, dense_))
    if any(d.is_complex for d in dtypes):
        dense_ = [t.abs() if t.is_complex() else t for t in dense_]
        dtypes = set(map(_DTYPE, dense_))
    if not dense_ or not dtypes <= set(_FAST) or not all(map(_IS_CPU, dense_)):
        return torch.stack(torch._foreach_norm(dense_, 2, dtype=torch.float64))
    groups = None
    if dtypes == {torch.float32}:  # a model's gradients or weights: the same shapes every step
        small, large, lengths, groups = _FLAT_PLANS.plan(dense_)
    else:
        (small, large), lengths = split_small(dense_), None
    if not small:
        return checked_norms(dense_, own_dtype_norms(dense_))
    chosen = [dense_[i] for i in small] if large else dense_
    # many tensors of a few shapes: one stack per shape; else (or shapes changed) one flat
    # buffer, with the plan's lengths where there is a plan (no second pass over the sizes)
    small_norms = None if groups is None else grouped_norms(chosen, groups)
    if small_norms is None:
        small_norms = (
            flat_norms(*flatten(chosen))
            if lengths is None
            else flat_norms(flat_copy(chosen), lengths)
        )
    if not large:
        return small_norms
    norms = torch.empty(len(dense_), dtype=torch.float64)
    norms[small] = small_norms
    rest = [dense_[i] for i in large]
    norms[large] = checked_norms(rest, own_dtype_norms(rest))
    return norms


#: Many small CPU float32 tensors (a 2,000-layer net's weights and biases) are normed in one
#: flat float64 buffer rather than one by one: a tensor costs microseconds of call overhead
#: whatever its size. Small: at most SMALL_NUMEL entries; taken so when there are at least
#: FLAT_MIN of them.
SMALL_NUMEL = 1 << 16
FLAT_MIN = 16


def split_small(tensors: Sequence[torch.Tensor]) -> tuple[list[int], list[int]]:
    """Indices of the small CPU float32 tensors (empty when fewer than FLAT_MIN), and of the
    others."""
    f32, cpu = torch.float32, torch.device("cpu")
    small = [
        i
        for i, t in enumerate(tensors)
        if t.numel() <= SMALL_NUMEL and t.dtype == f32 and t.device == cpu
    ]
    if len(small) < FLAT_MIN:
        return [], list(range(len(tensors)))
    chosen = set(small)
    return small, [i for i in range(len(tensors)) if i not in chosen]


def flat_copy(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors' entries in one flat tensor (one copy, made in C++)."""
    with torch.no_grad():
        return torch._utils._flatten_dense_tensors(tensors)


def flatten(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`flat_copy` of the tensors, and each one's length."""
    lengths = torch.tensor(list(map(torch.Tensor.numel, tensors)), dtype=torch.long)
    return flat_copy(tensors), lengths


#: small tensors of one shape: their positions among the small ones (a slice where they are
#: evenly spaced, as a model's weights and biases are, else a list) and their number of entries
Group = tuple[slice | list[int], int]
#: (small indices, large indices, lengths of the small ones, their groups or None)
Plan = tuple[list[int], list[int], torch.Tensor, list[Group] | None]


def grouped_norms(tensors: list[torch.Tensor], groups: Sequence[Group]) -> torch.Tensor | None:
    """The L2 norm of each small float32 tensor, summed in float64 (exact squares, as
    :func:`flat_norms`), one ``torch.stack`` per group: stacking tensors of one shape costs a
    fraction of a flat copy of the same entries (a 2,000-layer net's 4,000 gradients: 1.0 ms
    against 3.4 ms for the flat buffer and its segment sums). None if a group's tensors
    differ in shape (they had the same sizes but other shapes when the plan was made).

    >>> ts = [torch.tensor([3.0, 4.0]), torch.tensor([1.0]), torch.tensor([6.0, 8.0])]
    >>> grouped_norms(ts, [(slice(0, 3, 2), 2), ([1], 1)]).tolist()
    [5.0, 1.0, 10.0]
    >>> grouped_norms(ts, [([0, 1], 2)]) is None  # two shapes in one group
    True
    """
    out = torch.zeros(len(tensors), dtype=torch.float64)
    with torch.no_grad():
        for where, numel in groups:
            if numel == 0:
                continue  # empty tensors: norm 0
            members = tensors[where] if isinstance(where, slice) else [tensors[i] for i in where]
            try:
                stacked = torch.stack(members)
            except RuntimeError:
                return None
            out[where] = (
                stacked.reshape(len(members), numel).to(torch.float64).square_().sum(1).sqrt_()
            )
    return out


class FlatPlans:
    """:func:`split_small` of lists of CPU float32 tensors, with the small ones' lengths and
    their groups of equal sizes, kept per list of sizes: a model's gradients (or weights)
    have the same sizes step after step, so each step reads the sizes in one C-level pass and
    finds its plan in a dict, instead of testing every tensor in Python (a 2,000-layer net:
    0.2 ms against 2 ms). The groups are for :func:`grouped_norms`; they are None where one
    flat buffer costs less (fewer than FLAT_MIN small tensors a size on average) or where
    tensors of one size differ in shape.

    >>> plans = FlatPlans()
    >>> small, large, lengths, groups = plans.plan([torch.zeros(3)] * 20 + [torch.zeros(1 << 17)])
    >>> len(small), large, lengths.sum().item(), groups
    (20, [20], 60, [(slice(0, 20, 1), 3)])
    >>> plans.plan([torch.ones(3)] * 20 + [torch.ones(1 << 17)])[0] is small  # reused
    True
    >>> plans.plan([torch.ones(k) for k in range(20)])[3] is None  # 20 sizes: flat buffer
    True
    """

    #: plans kept (the gradients, the weights and the updates of one or two models)
    KEEP = 8

    def __init__(self) -> None:
        self._plans: dict[tuple[int, ...], Plan] = {}
        self._lock = threading.Lock()  # monitors in several threads share the module's plans

    def plan(self, tensors: Sequence[torch.Tensor]) -> Plan:
        """(small indices, large indices, lengths of the small ones, their groups or None) of
        CPU float32 ``tensors``."""
        sizes = tuple(map(torch.Tensor.numel, tensors))
        found = self._plans.get(sizes)
        if found is None:
            small, large = split_small(tensors)
            lengths = torch.tensor([sizes[i] for i in small], dtype=torch.long)
            found = (small, large, lengths, _groups(tensors, small))
            with self._lock:
                while len(self._plans) >= self.KEEP:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[sizes] = found
        return found


def _groups(tensors: Sequence[torch.Tensor], small: list[int]) -> list[Group] | None:
    """The small tensors grouped by size, for :func:`grouped_norms` (see :class:`FlatPlans`)."""
    by_size: dict[int, list[int]] = {}
    for k, i in enumerate(small):
        by_size.setdefault(tensors[i].numel(), []).append(k)
    if not small or len(small) < FLAT_MIN * len(by_size):
        return None
    for members in by_size.values():
        if len({tensors[small[k]].shape for k in members}) > 1:
            return None
    return [(_evenly(m), n) for n, m in by_size.items()]


def _evenly(positions: list[int]) -> slice | list[int]:
    """``positions`` as a slice where they are evenly spaced, else themselves.

    >>> _evenly([1, 3, 5]), _evenly([4]), _evenly([0, 1, 3])
    (slice(1, 6, 2), slice(4, 5, 1), [0, 1, 3])
    """
    step = positions[1] - positions[0] if len(positions) > 1 else 1
    if step > 0 and positions == list(range(positions[0], positions[-1] + 1, step)):
        return slice(positions[0], positions[-1] + 1, step)
    return positions


_FLAT_PLANS = FlatPlans()
_IS_SPARSE = operator.attrgetter("is_sparse")
_IS_CPU = operator.attrgetter("is_cpu")
_DTYPE = operator.attrgetter("dtype")
_GRAD = operator.attrgetter("grad")
#: exactly these types (not subclasses: a DTensor or a wrapper may hold no storage) are read
#: through NumPy on their own memory
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def segment_sums(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sums of consecutive segments of ``values`` of the given lengths (0 for an empty one).

    A contiguous float64 CPU ``values`` is summed by NumPy's ``add.reduceat`` (4x faster than
    ``torch.segment_reduce`` there: 400,000 entries in 26 segments, 0.25 against 0.93 ms).

    >>> segment_sums(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([2, 0, 1])).tolist()
    [3.0, 0.0, 4.0]
    >>> segment_sums(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64),
    ...              torch.tensor([0, 2, 0, 1, 0])).tolist()
    [0.0, 3.0, 0.0, 4.0, 0.0]
    """
    if not (
        values.dtype is torch.float64
        and values.is_cpu
        and lengths.is_cpu
        and type(values) in _PLAIN_TENSORS
        and values.dim() == 1
        and values.is_contiguous()
    ):
        return torch.segment_reduce(values, "sum", lengths=lengths)
    lens = lengths.numpy()
    out = np.zeros(len(lens), dtype=np.float64)
    filled = lens > 0  # reduceat reads an empty segment as one entry: those stay 0
    ends = np.cumsum(lens)
    if ends.size and int(ends[-1]) != values.numel():
        raise ValueError(f"segment lengths sum to {int(ends[-1])}, not {values.numel()}")
    starts = (ends - lens)[filled]
    if starts.size:
        out[filled] = np.add.reduceat(values.detach().numpy(), starts)
    return torch.from_numpy(out)


def flat_norms(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each segment of a :func:`flatten`-ed buffer, summed in float64 (exact for
    float32 entries: no square overflows or vanishes there).

    >>> flat_norms(torch.tensor([3.0, 4.0, 2.0**100]), torch.tensor([2, 1])).tolist() == [5, 2**100]
    True
    """
    return segment_sums(flat.to(torch.float64).square_(), lengths).sqrt_()


def blas_sq(t: torch.Tensor) -> float | None:
    """Sum of squares of a dense, contiguous CPU float32 tensor or parameter (not a subclass),
    by BLAS ``sdot`` on its own memory (NumPy's); None for any other tensor.

    In float32, like torch's CPU norm, but 2-3x faster (a 512x512 weight: 16 us against 40 us)
    and closer to float64 (relative error 2e-7 against 1e-6 there; on 4M entries 9e-6 against
    2e-4). Float32 only: NumPy's OpenBLAS runs ``sdot`` on the calling thread, while its
    ``ddot`` starts its own threads beside torch's. The caller checks the range
    (:data:`SAFE_NORM_RANGE`, squared): an overflow reads Inf, vanished squares 0.

    >>> blas_sq(torch.tensor([[3.0, 4.0]])), blas_sq(torch.ones(2, 2).t())
    (25.0, None)
    >>> blas_sq(torch.ones(2, dtype=torch.float64)) is None
    True
    """
    if (
        type(t) not in _PLAIN_TENSORS  # a subclass (DTensor, a wrapper) may hold no storage
        or t.dtype is not torch.float32
        or not t.is_cpu
        or t.layout is not torch.strided
        or not t.is_contiguous()
        or t.is_neg()
    ):
        return None
    a = t.detach().view(-1).numpy()
    with np.errstate(over="ignore", invalid="ignore"):  # Inf or NaN: the caller redoes it
        return float(np.dot(a, a))


def own_dtype_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each CPU tensor's norm taken in its own dtype, as a float64 vector (for
    :func:`checked_norms`): by :func:`blas_sq` where it applies, ``torch._foreach_norm``
    for the others.

    >>> own_dtype_norms([torch.tensor([3.0, 4.0]), torch.tensor([6.0, 8.0]).double()]).tolist()
    [5.0, 10.0]
    """
    squares = list(map(blas_sq, tensors))
    if None not in squares:
        return torch.tensor(squares, dtype=torch.float64).sqrt_()
    norms = torch.tensor([math.nan if s is None else s for s in squares], dtype=torch.float64)
    norms.sqrt_()
    others = [i for i, s in enumerate(squares) if s is None]
    found = torch._foreach_norm([tensors[i] for i in others], 2)
    norms[others] = torch.stack(found).to(torch.float64)
    return norms


def checked_norms(tensors: Sequence[torch.Tensor], norms: torch.Tensor) -> torch.Tensor:
    """``norms`` (of CPU ``tensors``, taken in their own dtype) in float64, those outside
    :data:`SAFE_NORM_RANGE` redone in float64 (see :func:`foreach_norm`)."""
    norms = norms.to(torch.float64)
    lo, hi = SAFE_NORM_RANGE
    redo = ((norms > lo) & (norms < hi)).logical_not_().nonzero().flatten().tolist()
    for i in redo:
        norms[i] = torch.linalg.vector_norm(tensors[i], dtype=torch.float64)
    return norms


#: a CPU tensor of at most this many entries is normed in float64 directly by :func:`norm_sq`
FEW_FLOAT64 = 1 << 12


def norm_sq(t: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of one tensor as a float64 0-d tensor (see :func:`foreach_norm`).

    A dense CPU float32/float64 tensor (an activation in a hook, many per step) takes the
    same path without the list handling: its own-dtype norm (:func:`blas_sq` where it
    applies), checked against
    :data:`SAFE_NORM_RANGE` on the host, redone in float64 only outside it; a small one
    (:data:`FEW_FLOAT64` entries) is normed in float64 at once.

    >>> norm_sq(torch.tensor([3.0, 4.0])).item(), norm_sq(torch.full((4,), 2.0**100)) == 2.0**202
    (25.0, tensor(True))
    """
    if t.device.type == "cpu" and t.dtype in _FAST and t.layout == torch.strided:
        if t.numel() <= FEW_FLOAT64:  # a float64 copy costs less than the checks: 2 ops, not 4
            return torch.linalg.vector_norm(t, dtype=torch.float64).square()
        square = blas_sq(t)
        if square is None:  # float64, or not contiguous: torch's norm in the tensor's dtype
            square = float(torch._foreach_norm([t], 2)[0]) ** 2
        lo, hi = SAFE_NORM_RANGE
        if lo * lo < square < hi * hi:
            return torch.tensor(square, dtype=torch.float64)
        return torch.linalg.vector_norm(t, dtype=torch.float64).square()
    return foreach_norm([t])[0].square()


class ParamIndex:
    """Flat list of the layers' parameters and, for each, the index of its layer.

    Statistics are computed on each parameter's local tensor (a DTensor's shard); where the
    parameters are sharded, :meth:`per_layer` all-reduces the per-layer sums over the ranks
    (:class:`~gradientflow.distributed.Shards`), so every sum is that of the full tensors.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.params = [p for layer in layers for p in layer.params]
        self.owner = [j for j, layer in enumerate(layers) for _ in layer.params]
        self.n_layers = len(layers)
        self.device = self.params[0].device
        self.numel = torch.tensor(
            [sum(p.numel() for p in layer.params) for layer in layers], dtype=torch.float64
        ).to(self.device)
        self.owner_idx = torch.tensor(self.owner, dtype=torch.long, device=self.device)
        self.shards = Shards(self.params)
        self.weight = self.weights_of(range(len(self.params)))
        self.grad_weight: torch.Tensor | None = None  # of the gradients with_grad() returned
        self._cache: tuple[tuple[bool, ...], torch.Tensor, torch.Tensor] | None = None
        self._all_present = (True,) * len(self.params)

    def weights_of(self, which: Iterable[int]) -> torch.Tensor | None:
        """The shares (see Shards) of the parameters ``which``; None when nothing is sharded."""
        if not self.shards.sharded:
            return None
        w = [self.shards.weight[i] for i in which]
        return torch.tensor(w, dtype=torch.float64).to(self.device)

    def local_params(self) -> list[torch.Tensor]:
        """The parameters (their local shards), detached."""
        if not self.shards.sharded:  # no DTensor: no local() lookups
            return [p.detach() for p in self.params]
        return [local(p.detach()) for p in self.params]

    def with_grad(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Gradients present now, their layer indices, and a mask of layers with any gradient."""
        grads = list(map(_GRAD, self.params))  # C-level reads: 4,000 parameters in 0.4 ms
        if any(map(operator.is_, grads, itertools.repeat(None))):
            present = tuple(g is not None for g in grads)
            grads = [g for g in grads if g is not None]
        else:
            present = self._all_present
        if self._cache is None or (self._cache[0] is not present and self._cache[0] != present):
            owners = [j for j, has in zip(self.owner, present, strict=True) if has]
            mask = torch.zeros(self.n_layers, dtype=torch.bool)
            mask[owners] = True
            idx = torch.tensor(owners, dtype=torch.long)
            self._cache = (present, idx.to(self.device), mask.to(self.device))
            self.grad_weight = self.weights_of(i for i, has in enumerate(present) if has)
        if self.shards.sharded:  # else no DTensor: no local() lookups, one per tensor
            grads = [local(g) for g in grads]
        return grads, self._cache[1], self._cache[2]

    def per_layer(
        self, values: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sum per-parameter ``values`` (local sums, weighted by their shares ``weight`` where
        the parameters are sharded) into a per-layer vector, over all ranks."""
        out = torch.zeros(self.n_layers, dtype=torch.float64, device=values.device)
        if weight is not None:
            values = values.to(torch.float64) * weight
        return self.shards.reduce(out.index_add_(0, idx, values))

    def nan_layers(self) -> torch.Tensor:
        return torch.full((self.n_layers,), float("nan"), dtype=torch.float64, device=self.device)


class Scratch:
    """Work space as large as the largest tensor, per device and dtype, reused across calls.

    Element-wise temporaries (``|w|``, ``g * 0``) are written here instead of into fresh
    tensors: a fresh allocation of a large CPU tensor costs page faults worth ten times the
    arithmetic. Parameters are processed one after another on one stream, so reuse is safe.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A buffer shaped like ``t``, of its dtype (or ``dtype``) and device."""
        n, dtype = t.numel(), dtype or t.dtype
        values = self._values.get((t.device, dtype))
        if values is None or values.numel() < n:
            values = self._values[(t.device, dtype)] = torch.empty(n, dtype=dtype, device=t.device)
        return values[:n].view(t.shape)

    def flags(self, t: torch.Tensor) -> torch.Tensor:
        """A boolean buffer shaped like ``t``, on its device."""
        return self.like(t, torch.bool)


@dataclass
class Watched:
    """What every probe of one monitor shares: the model and, once known, its layers.

    ``candidates`` are the modules that own parameters, in registration order; ``layers`` are
    set at the first recorded step (ordered by first use in the forward pass), with ``order[j]``
    the position in ``candidates`` of layer j's module and ``index`` their parameters.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    candidates: list[tuple[str, nn.Module]]
    schedule: Schedule = field(default_factory=Schedule)
    layers: list[Layer] | None = None
    order: list[int] = field(default_factory=list)
    index: ParamIndex | None = None
    scratch: Scratch = field(default_factory=Scratch)  # work space shared by the probes
    first_use: dict[int, int] = field(default_factory=dict)  # id(module) -> order of first call
    end_use: dict[str, int] = field(default_factory=dict)  # parent name -> first uses at its end
    compiled: bool = False  # runs through torch.compile: module hooks added later are not called
    _order_handles: list[Any] = field(default_factory=list)

    @classmethod
    def of(
        cls, model: nn.Module, optimizer: torch.optim.Optimizer | None, schedule: Schedule
    ) -> Watched:
        inner = unwrap(model)  # DDP's .module, torch.compile's ._orig_mod: names as the user's
        return cls(
            inner, optimizer, candidate_modules(inner), schedule, compiled=is_compiled(model)
        )

    def follow_order(self) -> None:
        """Until the layers are fixed, note the order in which the forward pass calls them."""
        if self.layers is not None:
            return
        stopper = Stopper("the layer order")
        for _, module in self.candidates:
            hook = bound_hook(module, stopper, self._note_first_use)
            self._order_handles.append(module.register_forward_pre_hook(hook))
        for name, parent in self._parents():
            end = bound_hook(parent, stopper, self._note_end(name))
            self._order_handles.append(parent.register_forward_hook(end))

    def _note_first_use(self, module: nn.Module, args: Any) -> None:
        self.first_use.setdefault(id(module), len(self.first_use))

    def _parents(self) -> list[tuple[str, nn.Module]]:
        """The modules holding candidates (for those their parent uses without calling)."""
        names = {name.rpartition(".")[0] for name, _ in self.candidates if "." in name}
        modules = dict(self.model.named_modules())
        return [(n, modules[n]) for n in sorted(names) if n in modules]

    def _note_end(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.end_use.setdefault(name, len(self.first_use))

        return hook

    def stop_following(self) -> None:
        for handle in self._order_handles:
            handle.remove()
        self._order_handles = []

    def build(self, first_use: dict[int, int] | None = None) -> None:
        """Fix the layers (once) from the order of first use seen in the forward pass."""
        if self.layers is not None:
            return
        self.stop_following()
        order = self.first_use if first_use is None else first_use
        self.layers = build_layers(
            self.candidates, order, optimizer_param_ids(self.optimizer), self.end_use
        )
        position = {id(m): i for i, (_, m) in enumerate(self.candidates)}
        self.order = [position[id(layer.module)] for layer in self.layers]
        self.index = ParamIndex(self.layers)

    def refresh(self) -> list[str]:
        """Follow the optimizer's param groups as they are now (``trainable``); return the
        names of model parameters that belong to no layer (added after the first step)."""
        assert self.layers is not None and self.index is not None
        ids = optimizer_param_ids(self.optimizer)
        for layer in self.layers:
            layer.trainable = _trainable(layer.params, ids)
        known = {id(p) for p in self.index.params}
        return [n for n, p in self.model.named_parameters() if id(p) not in known]
