"""Property-based tests of the run dir: exact round-trips, and corruption never crashes a load."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradientflow import GradientFlowError, Trace
from gradientflow.jsonsafe import json_safe
from gradientflow.store import TraceWriter
from gradientflow.trace import LAYER_METRICS, STEP_SCALARS, LayerInfo

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
names = st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
dtypes = st.sampled_from(["<f8", ">f8", "<f4", "<i8", "|i1", "<u2", "|b1", "<c16", "<U3", "|S2"])


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    n = draw(st.integers(0, 4))
    rows = draw(st.integers(0, 5))
    layers = [
        LayerInfo(
            name=draw(names),
            kind=draw(names),
            n_params=draw(st.integers(0, 2**62)),
            trainable=draw(st.booleans()),
            input_activation=draw(st.none() | names),
        )
        for _ in range(n)
    ]
    steps = sorted(draw(st.sets(st.integers(-(2**62), 2**62), min_size=rows, max_size=rows)))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    metrics = {m: draw(hnp.arrays(np.float64, (rows, n), elements=floats)) for m in LAYER_METRICS}
    scalars = {s: draw(hnp.arrays(np.float64, (rows,), elements=floats)) for s in STEP_SCALARS}
    extras = draw(
        st.dictionaries(
            names,
            dtypes.flatmap(lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0))),
            max_size=3,
        )
    )
    meta = draw(st.dictionaries(names, json_values, max_size=3))
    return Trace(
        layers=layers,
        steps=np.array(steps, dtype=np.int64),
        metrics=metrics,
        scalars=scalars,
        extras=extras,
        meta=meta,
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@FAST
@given(traces())
def test_any_trace_round_trips_exactly(t: Trace) -> None:
    with tempfile.TemporaryDirectory() as d:
        u = Trace.load(t.save(Path(d) / "run"))
    assert u.layers == t.layers
    assert same_bits(u.steps, t.steps)
    for m in LAYER_METRICS:
        assert same_bits(u.metrics[m], t.metrics[m]), m
    for s in STEP_SCALARS:
        assert same_bits(u.scalars[s], t.scalars[s]), s
    assert list(u.extras) == list(t.extras)
    for name, arr in t.extras.items():
        assert same_bits(u.extras[name], arr), name
    assert u.meta == json_safe(t.meta)  # non-finite floats in metadata: "inf", "nan"


def _saved_run(root: Path) -> Path:
    rng = np.random.default_rng(1)
    with TraceWriter(root) as w:
        w.write_meta([LayerInfo("a"), LayerInfo("b c")], {"note": [1, "x"]})
        for k in range(3):
            steps = np.arange(4 * k, 4 * k + 4)
            w.append({"steps": steps, "m.grad_norm": rng.random((4, 2)), "s.loss": rng.random(4)})
        w.write_extra("bptt/x", rng.random((2, 3)))
        w.write_extra("e", np.arange(4))
    return root


@pytest.fixture(scope="module")
def pristine() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield _saved_run(Path(d) / "run")


def _npz(draw: st.DrawFn) -> bytes:
    keys = st.sampled_from(["steps", "m.grad_norm", "s.loss", "m.out_rms", "x", "m.nope"])
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)
    dt = st.sampled_from(["<f8", "<i8", "<U2", "|b1", "<c8", "<u8"])
    arrays = draw(st.dictionaries(keys, dt.flatmap(lambda d: hnp.arrays(np.dtype(d), shapes))))
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


OPS = ["truncate", "flip", "delete", "garbage", "json", "npz", "fifo", "dir", "swap", "edit"]
OPS.append("member")


@st.composite
def corruption(draw: st.DrawFn, files: list[str]) -> list[tuple[str, str, Any]]:
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(files))
        kind = draw(st.sampled_from(OPS))
        if kind == "edit":
            arg = (draw(st.lists(st.integers(0, 5), max_size=4)), draw(json_values))
        elif kind == "member":
            arg = (draw(st.integers(0, 5)), _npz(draw))
        elif kind == "json":
            arg: Any = json.dumps(draw(json_values | st.dictionaries(names, json_values)))
        elif kind == "npz":
            arg = _npz(draw)
        elif kind == "swap":
            arg = draw(st.sampled_from(files))
        else:
            arg = draw(st.integers(0, 10**6))
        ops.append((target, kind, arg))
    return ops


def _apply(root: Path, target: str, kind: str, arg: Any) -> None:
    path = root / target
    if not path.is_file() or path.is_symlink():
        return
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: arg % (len(data) + 1)])
    elif kind == "flip" and data:
        pos = arg % len(data)
        path.write_bytes(data[:pos] + bytes([data[pos] ^ (1 + arg % 255)]) + data[pos + 1 :])
    elif kind in ("delete", "fifo", "dir"):
        path.unlink()
        {"fifo": os.mkfifo, "dir": os.mkdir}.get(kind, lambda p: None)(path)
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(arg).bytes(arg % 3000))
    elif kind in ("json", "npz"):
        path.write_bytes(arg.encode() if isinstance(arg, str) else arg)
    elif kind == "edit" and target.endswith(".json"):
        try:
            doc = json.loads(data)
        except ValueError:  # already garbled by an earlier operation
            return
        path.write_text(json.dumps(_edited(doc, *arg)))
    elif kind == "member" and target.endswith(".npz"):
        path.write_bytes(_member_replaced(data, *arg))
    elif kind == "swap" and (root / arg).is_file():
        other = (root / arg).read_bytes()
        (root / arg).write_bytes(data)
        path.write_bytes(other)


def _member_replaced(data: bytes, drop: int, new: bytes) -> bytes:
    """The chunk ``data`` with one member dropped and the arrays of ``new`` added."""
    try:
        with np.load(io.BytesIO(data)) as old:
            arrays = {k: old[k] for k in old.files}
    except Exception:  # already corrupted by an earlier operation: leave it so
        return data
    if arrays:
        del arrays[sorted(arrays)[drop % len(arrays)]]
    with np.load(io.BytesIO(new)) as z:
        arrays.update({k: z[k] for k in z.files})
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _edited(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node reached by following ``path`` (indices into keys/items) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    doc[key] = _edited(doc[key], path[1:], value)
    return doc


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError("Trace.load blocked (a FIFO opened?)")


@FAST
@given(data=st.data())
def test_a_corrupted_run_loads_or_gives_one_error(pristine: Path, data: st.DataObject) -> None:
    files = sorted(str(p.relative_to(pristine)) for p in pristine.rglob("*") if p.is_file())
    ops = data.draw(corruption(files))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "run"
        shutil.copytree(pristine, root)
        for op in ops:
            _apply(root, *op)
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(10)
        try:
            for damaged in ("error", "skip"):
                _load_checked(root, damaged)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _load_checked(root: Path, damaged: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            t = Trace.load(root, damaged=damaged)
        except GradientFlowError as exc:
            assert "\n" not in str(exc) and str(exc)
            return
    assert bool(np.all(np.diff(t.steps) > 0))
    assert all(v.shape == (t.n_records, t.n_layers) for v in t.metrics.values())
    assert set(t.steps) <= set(range(12))
