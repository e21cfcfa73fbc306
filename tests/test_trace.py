"""The Trace format: save/load without pickle, crash-safe appends, bounded size."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import GradientFlowError, Schedule, Trace
from gradientflow.trace import LAYER_METRICS


def test_save_load_roundtrip_keeps_every_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cols = {m: rng.random((4, 3)) for m in LAYER_METRICS}
    cols["grad_norm"][2, 1] = np.inf
    cols["out_rms"][0, 0] = np.nan
    t = Trace.build(
        ["a", "b/c", "<script>"],
        steps=[0, 1, 5, 9],
        kinds=["Linear"] * 3,
        loss=[2.0, 1.5, np.nan, 1.0],
        meta={"note": "x", "n": np.int64(3)},
        extras={"bptt/rnn/dl_dh": rng.random((2, 7))},
        **cols,
    )
    t.save(tmp_path / "run")
    u = Trace.load(tmp_path / "run")
    assert u.layer_names == ["a", "b/c", "<script>"]
    assert list(u.steps) == [0, 1, 5, 9]
    for m in LAYER_METRICS:
        np.testing.assert_array_equal(u.metrics[m], t.metrics[m])
    np.testing.assert_array_equal(u.loss, t.loss)
    np.testing.assert_array_equal(u.extras["bptt/rnn/dl_dh"], t.extras["bptt/rnn/dl_dh"])
    assert u.meta == {"note": "x", "n": 3}
    # no pickle anywhere: every array loads with allow_pickle=False
    for f in (tmp_path / "run").rglob("*.np[yz]"):
        np.load(f, allow_pickle=False)


def test_bad_traces_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GradientFlowError, match=r"no meta\.json"):
        Trace.load(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(GradientFlowError, match="not valid JSON"):
        Trace.load(tmp_path)
    with pytest.raises(GradientFlowError, match="shape"):
        Trace.build(["a", "b"], steps=[0], grad_norm=[[1.0]])
    with pytest.raises(GradientFlowError, match="unknown column"):
        Trace.build(["a"], steps=[0], gradnorm=[[1.0]])
    with pytest.raises(GradientFlowError, match="no layer named"):
        Trace.build(["a"], steps=[0]).layer_index("b")


def test_log_dir_is_never_overwritten(tmp_path: Path) -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, log_dir=tmp_path / "run") as mon:
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
    assert Trace.load(tmp_path / "run").n_records == mon.trace.n_records == 1
    with pytest.raises(GradientFlowError, match="already holds a trace"):
        gradientflow.watch(model, opt, log_dir=tmp_path / "run")


KILLED_RUN = textwrap.dedent(
    """
    import sys, torch, gradientflow
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mon = gradientflow.watch(model, opt, log_dir=sys.argv[1], flush_every=10).attach()
    step = 0
    while True:
        opt.zero_grad()
        loss = model(torch.randn(32, 8)).pow(2).mean()
        loss.backward()
        mon.log(loss=loss)
        opt.step()
        step += 1
        if step == 35:
            print("ready", flush=True)
    """
)


def test_sigkilled_run_leaves_a_trace_that_loads(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    log_dir = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    t = Trace.load(log_dir)
    assert t.n_records >= 30 and t.n_records % 10 == 0  # complete up to the last flush
    assert list(t.steps) == list(range(t.n_records))
    assert np.isfinite(t.metrics["grad_norm"]).all()
    assert np.isfinite(t.loss).all()
    assert json.loads((log_dir / "meta.json").read_text())["layers"][0]["name"] == "0"


def test_default_schedule_bounds_a_million_steps_on_100_layers() -> None:
    s = Schedule()
    recorded = sum(1 for k in range(1_000_000) if s.records(k))
    full = sum(1 for k in range(1_000_000) if s.is_full(k))
    assert recorded < 4000
    # host bytes: every metric as float64 for every record and layer, plus scalars and steps
    n_layers = 100
    bytes_ = recorded * (len(LAYER_METRICS) * n_layers * 8 + 5 * 8)
    assert bytes_ <= 50e6, bytes_
    assert full >= 190  # recorded multiples of 50: 20 in the dense phase, 2,000 in all
    assert all(s.records(k) for k in range(1000))


@pytest.mark.slow
def test_recording_a_long_run_stays_bounded(tmp_path: Path) -> None:
    """20,000 steps through monitor.step() (benchmarks/memory.py runs 1,000,000)."""
    layers = [nn.Linear(2, 2) for _ in range(100)]
    model = nn.Sequential(*layers)
    model(torch.ones(1, 2)).sum().backward()
    with gradientflow.watch(model, log_dir=tmp_path / "log", flush_every=200) as mon:
        for _ in range(20_000):
            mon.step()
    t = mon.trace
    expected = sum(1 for k in range(20_000) if Schedule().records(k))
    assert t.n_records == expected
    size = sum(f.stat().st_size for f in (tmp_path / "log").rglob("*") if f.is_file())
    assert size < 50e6 * expected / 3700


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": ["a", "a"]}, "layer name 'a' is given twice"),
        ({"steps": [0.5, 1.7], "grad_norm": [[1.0], [2.0]]}, "steps must be whole numbers"),
        ({"steps": [[0, 1]], "grad_norm": [[1.0], [2.0]]}, "steps must be flat"),
        ({"steps": ["x"], "grad_norm": [[1.0]]}, "steps must be whole numbers"),
        ({"steps": [1e30], "grad_norm": [[1.0]]}, "beyond the 64-bit range"),
        ({"grad_norm": [["a"]]}, "column 'grad_norm': holds <U1 values"),
        ({"grad_norm": [[1j]]}, "column 'grad_norm': holds complex128 values"),
        ({"grad_norm": [[1.0], [1.0, 2.0]]}, "column 'grad_norm'"),
        ({"grad_norm": [[10**400]]}, "column 'grad_norm'"),
        ({"kinds": ["Linear", "Linear"]}, "2 kinds for 1 layers"),
        ({"meta": [1, 2]}, "meta must be a mapping, got list"),
    ],
)
def test_build_refuses_what_it_would_change_or_cannot_hold(
    kwargs: dict[str, Any], message: str
) -> None:
    """Steps are never rounded (0.5 and 1.7 were stored as 0 and 1), layer names are unique,
    and every bad value is a GradientFlowError naming the argument, never a bare ValueError."""
    args = {"layers": ["a"], **kwargs}
    with pytest.raises(GradientFlowError, match=re.escape(message)):
        Trace.build(args.pop("layers"), **args)


def test_build_keeps_whole_float_steps_and_numeric_columns() -> None:
    t = Trace.build(["a"], steps=np.arange(3.0), grad_norm=np.ones((3, 1), dtype=np.int64))
    assert t.steps.tolist() == [0, 1, 2] and t.steps.dtype == np.int64
    assert t.metrics["grad_norm"].dtype == np.float64
