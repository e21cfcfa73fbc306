"""Recurrent nets: the gradient through time, recorded on sampled steps.

:func:`recurrent_probes` gives one :class:`RecurrentProbe` per recurrent module of a model:
every ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` (any number of layers, batch-first or not,
bidirectional), every ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``, and any module of
your own named in ``cells=`` that your code steps in a Python loop as ``h = cell(x_t, h)``.

During training a probe keeps references to what the module last read and registers tensor
hooks on its outputs, so the real backward pass hands it ∂L/∂output (no copies, no extra
work). On a sampled step it replays that batch through an unrolled copy sharing the weights
(:mod:`gradientflow.probes.recurrent_replay`) and stores, per layer and direction:

==============================  =====================================================
``bptt/<layer>/dl_dh``          (samples, T) ‖∂L/∂h_t‖, the total gradient at step t
``bptt/<layer>/gain``           (samples, T) ‖u·∂h_T/∂h_t‖, the gain through time
``bptt/<layer>/dl_dc``          (samples, T) LSTM only: ‖∂L/∂c_t‖ of the cell state
``bptt/<layer>/gain_c``         (samples, T) LSTM only: ‖v·∂c_T/∂c_t‖, v along ∂L/∂c_T
``bptt/<layer>/steps``          (samples,) optimizer step of each sample
``bptt/<layer>/kind``           (1,) "RNN_TANH", "LSTM", "GRU", "LSTMCell", "cell", ...
==============================  =====================================================

The last column is the last step read; shorter sequences are padded with NaN on the left.
``<layer>`` is the module's name, with ``.l<k>`` for each of several layers and ``.reverse``
for the backward direction. Only the last forward call before each optimizer step is used
(the last micro-batch under gradient accumulation). For a cell, the state must be passed back
unchanged as positional argument 1 (or keyword ``hx``); a call whose state is not the previous
call's output starts a new sequence.

>>> import numpy as np, torch
>>> model = torch.nn.Sequential()
>>> model.add_module("lstm", torch.nn.LSTM(2, 8, batch_first=True))
>>> [probe] = recurrent_probes(model)
>>> probe.attach()
>>> out, _ = model(torch.randn(4, 20, 2))
>>> out[:, -1].sum().backward()
>>> probe.on_step(0, True)  # the first full step is always replayed
{}
>>> ex = probe.extras()
>>> ex["bptt/lstm/dl_dh"].shape, float(ex["bptt/lstm/gain"][0, -1])
((1, 20), 1.0)
>>> probe.detach()
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.probes.base import Probe
from gradientflow.probes.hooks import Stopper, bound_hook
from gradientflow.probes.recurrent_replay import (
    TimeGrads,
    check_gain_mode,
    first_tensor,
    gain_curve,
    silenced,
    state_arg,
    through_time,
    unroll_cell,
)
from gradientflow.probes.recurrent_unroll import RECURRENT_TYPES, module_kind

CELL_TYPES: tuple[type[nn.Module], ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)

#: A probe replays on every DEFAULT_EVERY-th full step, the first one included: every full
#: step by default (steps 0, 50, 100, ... under the default schedule). A replay costs about two
#: training steps of the module (docs/recurrent.md, Cost). ``every=4`` costs less but the
#: latest sample is then up to 200 steps old, and the verdict reads the latest: the zoo's
#: held-out LSTM that learns the adding problem (seed 1) got a false critical
#: vanishing_through_time from a sample at step 400 of 600, taken before it had learned.
DEFAULT_EVERY = 1


@dataclass
class _Capture:
    """What the module read in its last forward call, and what the backward gave back."""

    input: Any = None
    hx: Any = None
    n_out: int = 0  # outputs watched so far (their gradients arrive in ``grads``)
    last: Tensor | None = None  # a cell's latest output, to chain its calls
    grads: dict[int, Tensor] = field(default_factory=dict)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, tuple | list):
        return type(x)(_detach(v) for v in x)
    return x


def _norms(grads: Sequence[Tensor | None]) -> np.ndarray:
    return np.array([0.0 if g is None else float(g.double().norm()) for g in grads])


class RecurrentProbe(Probe):
    """Monitor probe recording the gradient through time of one recurrent module.

    ``every``: replay on every ``every``-th step the monitor marks as full (``full=True``),
    counting from the first, which is always replayed. The monitor's default schedule makes
    every 50th step full, so the default (:data:`DEFAULT_EVERY`, 1) replays steps 0, 50,
    100, ...; under ``Schedule.everything()`` every step is full and replayed. A replay costs
    about two training steps of the module (forward and backward through the unrolled copy,
    one more backward per gain curve): under ``Schedule.everything()`` each step costs several
    plain ones, ``every=4`` about half as much (see docs/recurrent.md, Cost).
    ``gain``: ``"vjp"`` (default), ``"spectral"`` (exact ‖∂h_T/∂h_t‖₂, small layers) or
    ``"none"``. Use it without a monitor by calling ``attach()``, then
    ``on_step(step, True)`` after each backward pass, and ``detach()`` at the end.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        *,
        cell: bool = False,
        every: int = DEFAULT_EVERY,
        gain: str = "vjp",
    ) -> None:
        if every < 1:
            raise GradientFlowError(f"RecurrentProbe {name!r}: every must be >= 1, got {every}")
        self.module, self.name, self.cell, self.every, self.gain = module, name, cell, every, gain
        hidden = getattr(module, "proj_size", 0) or getattr(module, "hidden_size", 0)
        check_gain_mode(gain, module, name, int(hidden))
        self.kind = type(module).__name__ if cell else module_kind(module)
        if cell and not isinstance(module, CELL_TYPES):
            self.kind = "cell"
        self._cap = _Capture()
        self._handles: list[Any] = []
        self._stopper = Stopper(f"gradient through time of {name!r}")
        self._lstm_cell = isinstance(module, nn.LSTMCell)
        self._seen_full = 0
        self._replaying = False
        self._warned: set[str] = set()
        self._rows: dict[str, list[TimeGrads]] = {}
        self._steps: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ hooks
    def attach(self, watched: Any = None) -> None:
        """Register the forward hook (bound to this module: a deepcopy's call does nothing)."""
        super().attach(watched)
        fn = self._cell_hook if self.cell else self._module_hook
        hook = bound_hook(self.module, self._stopper, fn, self._compiled)
        self._handles.append(self.module.register_forward_hook(hook, with_kwargs=True))

    def detach(self) -> None:
        """Remove the hook."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _watch(self, cap: _Capture, tensors: Sequence[Tensor | None]) -> None:
        for t in tensors:
            if isinstance(t, Tensor) and t.requires_grad:
                t.register_hook(lambda g, i=cap.n_out: cap.grads.__setitem__(i, g.detach()))
            cap.n_out += 1

    def _module_hook(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        if not torch.is_grad_enabled():
            return
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, Tensor):
            self._warn("packed", "PackedSequence input is not supported; this call is skipped")
            return
        y, state = out
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        if not y.requires_grad:
            return
        cap = _Capture(x.detach(), _detach(args[1] if len(args) > 1 else kwargs.get("hx")))
        self._watch(cap, [y, h_n, c_n])
        self._cap = cap

    def _cell_hook(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        if self._replaying or not torch.is_grad_enabled():
            return
        h = first_tensor(out)
        if h is None or not h.requires_grad:
            return
        state = state_arg(args, kwargs)
        prev = first_tensor(state)
        cap = self._cap
        if state is None or cap.last is None or prev is not cap.last:
            cap = self._cap = _Capture(hx=_detach(state))
        cap.calls.append((_detach(tuple(args)), _detach(dict(kwargs))))
        self._watch(cap, [h, out[1]] if self._lstm_cell else [h])
        cap.last = h

    # ------------------------------------------------------------------ measuring
    def measure(self) -> list[TimeGrads]:
        """Per-time-step norms for the last captured forward/backward (empty if none)."""
        cap = self._cap
        if not cap.grads:
            return []
        if self.cell:
            return [self._measure_cell(cap)]
        g = [cap.grads.get(i) for i in range(3)]
        module = self.module
        assert isinstance(module, nn.RNNBase)
        return through_time(
            module, cap.input, cap.hx, g[0], g[1], g[2], name=self.name, gain=self.gain
        )

    def _measure_cell(self, cap: _Capture) -> TimeGrads:
        every = 2 if self._lstm_cell else 1  # outputs watched per call: h (and c)
        grads = [cap.grads.get(i) for i in range(cap.n_out)]
        self._replaying = True
        try:
            with silenced(self.module), torch.enable_grad():
                hs, cs = unroll_cell(self.module, cap.calls, cap.hx)
                result = TimeGrads(
                    self.name,
                    self.kind,
                    _norms(grads[::every]),
                    gain_curve(hs, grads[::every][-1], self.gain),
                )
                if self._lstm_cell:
                    result.dl_dc = _norms(grads[1::2])
                    result.gain_c = gain_curve(cs, grads[1::2][-1], self.gain)
        finally:
            self._replaying = False
        return result

    def on_step(self, step: int, full: bool) -> Mapping[str, Tensor]:
        """Replay and record on every ``every``-th full step; never raises in training.

        The curves go to :meth:`extras`; no Trace column is filled.
        """
        if not full:
            return {}
        self._seen_full += 1
        if (self._seen_full - 1) % self.every:
            return {}
        try:
            results = self.measure()
        except Exception as exc:  # a probe must not stop the user's training
            self._warn("measure", f"replay failed at step {step}: {exc}")
            return {}
        for r in results:
            self._rows.setdefault(r.name, []).append(r)
            self._steps.setdefault(r.name, []).append(int(step))
        return {}

    def extras(self) -> dict[str, np.ndarray]:
        """Recorded arrays for ``Trace.extras`` (see the module docstring for the keys)."""
        out: dict[str, np.ndarray] = {}
        for name, rows in self._rows.items():
            width = max(len(r.dl_dh) for r in rows)
            for key in ("dl_dh", "gain", "dl_dc", "gain_c"):
                if getattr(rows[-1], key) is None:
                    continue
                arr = np.full((len(rows), width), np.nan)
                for i, r in enumerate(rows):
                    curve = getattr(r, key)
                    if curve is not None:
                        arr[i, width - len(curve) :] = curve
                out[f"bptt/{name}/{key}"] = arr
            out[f"bptt/{name}/steps"] = np.array(self._steps[name], dtype=np.int64)
            out[f"bptt/{name}/kind"] = np.array([rows[-1].kind])
        return out

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"gradientflow recurrent probe {self.name!r}: {message}",
                GradientFlowWarning,
                stacklevel=2,
            )


def recurrent_probes(
    model: nn.Module,
    *,
    cells: Sequence[nn.Module] = (),
    every: int = DEFAULT_EVERY,
    gain: str = "vjp",
    skip: Sequence[Probe] = (),
) -> list[RecurrentProbe]:
    """One probe per recurrent module of ``model`` (empty list if it has none).

    ``cells``: your own cell modules, stepped in a Python loop as ``h = cell(x_t, h)``.
    ``every``, ``gain``: passed to each :class:`RecurrentProbe` (``every=1``: a replay on
    every full step; pass the probes to ``watch(..., probes=...)`` to use them).
    ``skip``: probes already chosen; a module one of them follows gets no second probe.

    >>> class Loop(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.cell = torch.nn.GRUCell(3, 5)
    ...         self.rnn = torch.nn.RNN(5, 5, num_layers=2)
    >>> [(p.name, p.kind) for p in recurrent_probes(Loop())]
    [('cell', 'GRUCell'), ('rnn', 'RNN_TANH')]
    """
    names = {id(m): n for n, m in model.named_modules()}
    for c in cells:
        if id(c) not in names:
            raise GradientFlowError(
                f"recurrent_probes: cell {type(c).__name__} is not a submodule of the model"
            )
    chosen = {id(c) for c in cells}
    covered = {id(p.module) for p in skip if isinstance(p, RecurrentProbe)}
    probes = []
    for name, m in model.named_modules():
        if id(m) in covered:
            continue
        label = name or type(m).__name__.lower()
        if isinstance(m, RECURRENT_TYPES):
            probes.append(RecurrentProbe(m, label, every=every, gain=gain))
        elif isinstance(m, CELL_TYPES) or id(m) in chosen:
            probes.append(RecurrentProbe(m, label, cell=True, every=every, gain=gain))
    return probes
