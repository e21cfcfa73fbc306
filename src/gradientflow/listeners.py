"""What the monitor's flushes feed: the run directory, TensorBoard, early warnings.

Each is a :class:`~gradientflow.recorder.Listener`; :func:`listeners_for` makes them from
``watch()``'s options, so the monitor itself does not know who reads its records.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.recorder import Flush, Listener
from gradientflow.store import TraceWriter
from gradientflow.trace import Trace

#: a model's (name, parameter count) per layer, given a layer order (None: not known yet)
LayerSizes = Callable[[list[str]], list[tuple[str, int]] | None]

#: ``warn=True`` looks at the run after these many steps, then at every flush.
WARN_AT_STEPS = (10, 20)


class RunDirectory:
    """Appends every chunk to ``log_dir`` (atomic writes; a killed run loads)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "new",
        layers: LayerSizes | None = None,
    ) -> None:
        self.writer = TraceWriter(path, mode=mode)
        self.failed_extras: dict[str, str] = {}
        if layers is not None:
            try:
                self._check_resumed(layers)
            except BaseException:
                self.writer.close()
                raise

    def _check_resumed(self, layers: LayerSizes) -> None:
        """A resumed run must be of this model: the same layers (names and sizes, the model's
        taken in the run's layer order, which decides who owns a tied parameter); else two
        models' rows would mix in one trace."""
        old = self.writer.layers
        if not old or self.writer.n_records == 0:
            return
        sizes = layers([x.name for x in old])
        if sizes is None:
            return
        theirs = {x.name: x.n_params for x in old}
        mine = dict(sizes)
        if theirs != mine:
            differ = sorted(n for n in set(theirs) | set(mine) if theirs.get(n) != mine.get(n))
            shown = ", ".join(
                f"{n!r}: {theirs.get(n, 'absent')} there, {mine.get(n, 'absent')} here"
                for n in differ[:3]
            )
            raise GradientFlowError(
                f"watch(resume=True): {self.writer.path} holds a run of another model "
                f"(parameters per layer differ: {shown}{', ...' if len(differ) > 3 else ''}); "
                "resume with the same model, or pass overwrite=True or another log_dir"
            )

    def on_flush(self, event: Flush) -> None:
        self.writer.write_meta(event.layers, event.meta)
        self.writer.append(event.chunk)
        for name, arr in event.extras.items():
            if name in self.failed_extras:
                continue
            try:  # one extra that cannot be stored must not stop the recording
                self.writer.write_extra(name, arr)
            except Exception as exc:
                self.failed_extras[name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"gradientflow could not store the extra {name!r} in {self.writer.path}: "
                    f"{exc}. It stays in the monitor's trace; recording goes on.",
                    GradientFlowWarning,
                    stacklevel=2,
                )

    def close(self, event: Flush) -> None:
        self.writer.close()  # gives the run directory's lock back


class TensorBoardStream:
    """Writes each chunk's per-layer scalars, and the findings at the end, to TensorBoard."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        from gradientflow.report.tensorboard import TensorBoardWriter

        self.tb: Any = TensorBoardWriter(log_dir)

    def on_flush(self, event: Flush) -> None:
        self.tb.write(Trace.concat(event.layers, [event.chunk]))

    def close(self, event: Flush) -> None:
        try:
            if event.layers:
                trace = event.trace()
                if trace.n_records:
                    self.tb.write_diagnosis(event.diagnose(), step=int(trace.steps[-1]))
        finally:
            self.tb.close()


class CriticalWarnings:
    """``warn=True``: one Python warning per kind of critical finding, as soon as it shows."""

    def __init__(self) -> None:
        self.warned: set[str] = set()

    def on_flush(self, event: Flush) -> None:
        try:
            diagnosis = event.diagnose()
        except Exception as exc:  # a failing rule must not stop training
            warnings.warn(
                f"gradientflow: diagnosis failed: {exc}", GradientFlowWarning, stacklevel=4
            )
            return
        for finding in diagnosis.findings:
            if finding.severity == "critical" and finding.kind not in self.warned:
                self.warned.add(finding.kind)
                warnings.warn(f"gradientflow: {finding.message}", GradientFlowWarning, stacklevel=4)

    def close(self, event: Flush) -> None:
        pass


def run_mode(overwrite: bool, resume: bool) -> str:
    """The run directory's mode from ``watch(..., overwrite=, resume=)``.

    >>> run_mode(False, False), run_mode(True, False), run_mode(False, True)
    ('new', 'overwrite', 'resume')
    """
    if overwrite and resume:
        raise GradientFlowError("watch(): pass overwrite=True or resume=True, not both")
    return "overwrite" if overwrite else "resume" if resume else "new"


def resume_step(listeners: list[tuple[Listener, tuple[int, ...]]]) -> int:
    """The first step of this run: after the last step a resumed run directory trained,
    else 0."""
    for listener, _ in listeners:
        if isinstance(listener, RunDirectory):
            return listener.writer.resume_step
    return 0


def listeners_for(
    log_dir: str | os.PathLike[str] | None,
    tensorboard: str | os.PathLike[str] | None,
    warn: bool,
    mode: str = "new",
    layers: LayerSizes | None = None,
) -> list[tuple[Listener, tuple[int, ...]]]:
    """The listeners ``watch()``'s options ask for, each with the steps it wants a flush at
    (``layers``: the model's (name, parameter count) per layer in a given order, which a
    resumed run must match)."""
    out: list[tuple[Listener, tuple[int, ...]]] = []
    if log_dir is not None:
        out.append((RunDirectory(log_dir, mode, layers), ()))
    if tensorboard is not None:
        out.append((TensorBoardStream(tensorboard), ()))
    if warn:
        out.append((CriticalWarnings(), WARN_AT_STEPS))
    return out
