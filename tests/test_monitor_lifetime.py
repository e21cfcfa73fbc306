"""watch() as a plain call (records until close()) and as a context manager; a monitor never
closed is flushed and closed at garbage collection or interpreter exit, with one warning."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import lifetime
from gradientflow.errors import GradientFlowWarning
from gradientflow.lifetime import UnclosedMonitorWarning
from gradientflow.monitor import Monitor
from gradientflow.schedule import Schedule
from gradientflow.trace import Trace


def make() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, mon: Monitor | None = None):
    """Train; return the per-layer gradient norms computed by plain autograd, per step."""
    torch.manual_seed(1)
    norms = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        if mon is not None:
            mon.log(loss=loss)
        norms.append(
            [
                float(torch.cat([p.grad.flatten() for p in layer.parameters()]).norm())
                for layer in (model[0], model[2])
            ]
        )
        opt.step()
    return np.array(norms)


def hooks(opt: torch.optim.Optimizer) -> int:
    return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def test_plain_call_records_from_the_first_step_until_close() -> None:
    model, opt = make()
    mon = gradientflow.watch(model, opt, schedule=Schedule.everything())
    assert hooks(opt) == 2
    expected = train(model, opt, 6, mon)
    trace = mon.close()
    assert hooks(opt) == 0  # closed: the optimizer is as before
    assert trace.steps.tolist() == list(range(6))
    np.testing.assert_allclose(trace.metrics["grad_norm"], expected, rtol=1e-5)
    train(model, opt, 2)  # after close nothing more is recorded
    assert mon.trace.n_records == 6


def test_with_block_and_attach_still_work_and_attach_is_idempotent() -> None:
    model, opt = make()
    with gradientflow.watch(model, opt) as mon:
        assert mon.attach() is mon and hooks(opt) == 2  # no second set of hooks
        expected = train(model, opt, 3, mon)
    assert hooks(opt) == 0
    np.testing.assert_allclose(mon.trace.metrics["grad_norm"], expected, rtol=1e-5)
    built = Monitor(model, opt)  # the class alone installs nothing until attach()/with
    assert hooks(opt) == 0
    with built:
        train(model, opt, 2)
    assert built.trace.n_records == 2 and hooks(opt) == 0


def test_a_closed_monitor_gives_no_warning() -> None:
    model, opt = make()
    mon = gradientflow.watch(model, opt)
    train(model, opt, 2, mon)
    mon.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del mon, model, opt
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, GradientFlowWarning)]


def test_a_dropped_monitor_is_flushed_and_closed_at_the_latest_at_exit(tmp_path: Path) -> None:
    def forget() -> np.ndarray:
        model, opt = make()
        mon = gradientflow.watch(
            model, opt, log_dir=tmp_path / "run", flush_every=100, schedule=Schedule.everything()
        )
        return train(model, opt, 7, mon)  # 7 records pending on the device, none written

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = forget()
        gc.collect()  # closed here if nothing else holds it (a clipping reader may)...
        lifetime._close_all_at_exit()  # ... else by the interpreter's exit handler
    ours = [
        w
        for w in caught
        if issubclass(w.category, UnclosedMonitorWarning) and str(tmp_path) in str(w.message)
    ]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert "mon.close()" in text and "with gradientflow.watch(" in text
    trace = Trace.load(tmp_path / "run")
    np.testing.assert_allclose(trace.metrics["grad_norm"], expected, rtol=1e-5)


SCRIPT = textwrap.dedent(
    """
    import sys, torch, gradientflow
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gradientflow.watch(model, opt, log_dir=sys.argv[1], flush_every=100)
    for _ in range(5):
        opt.zero_grad()
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        mon.log(loss=loss)
        opt.step()
    print(round(float(loss), 8))
    """
)


def test_a_forgotten_monitor_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "forget.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("UnclosedMonitorWarning") == 1, out.stderr
    assert "at interpreter exit" in out.stderr and "mon.close()" in out.stderr
    trace = Trace.load(tmp_path / "run")  # the 5 pending records were written at exit
    assert trace.n_records == 5
    assert trace.loss[-1] == pytest.approx(float(out.stdout.strip()), rel=1e-6)
    same = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))  # a resume needs it
    with gradientflow.watch(same, log_dir=tmp_path / "run", resume=True) as mon:
        assert mon.step_count == 5  # the lock was given back
