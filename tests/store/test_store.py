"""Writing run dirs: atomic files, one writer per dir, modes, no symlink following, names."""

from __future__ import annotations

import os
import signal
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
import gradientflow.store as store
from gradientflow import GradientFlowError, Trace
from gradientflow.store import TraceWriter, write_file
from gradientflow.trace import LayerInfo

LAYERS = [LayerInfo("fc1"), LayerInfo("fc2")]


def chunk(first: int, rows: int, n: int = 2) -> dict[str, np.ndarray]:
    steps = np.arange(first, first + rows)
    return {
        "steps": steps,
        "m.grad_norm": np.outer(steps + 1.0, np.arange(1, n + 1)),
        "s.loss": 1.0 / (steps + 1.0),
    }


def make_run(root: Path, n_chunks: int = 3, rows: int = 5) -> None:
    with TraceWriter(root) as w:
        w.write_meta(LAYERS, {"note": "test"})
        for k in range(n_chunks):
            w.append(chunk(k * rows, rows))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_temporary_files_are_never_loaded_and_are_cleaned(tmp_path: Path) -> None:
    """Defect 2: leftovers of a killed flush matched *.npz and broke loading."""
    run = tmp_path / "run"
    make_run(run)
    for where in ("chunks", "extras", "."):
        (run / where).mkdir(exist_ok=True)
        (run / where / ".00000003.npz.123.abcd.tmp").write_bytes(b"PK\x03\x04 half a zip")
        (run / where / ".tmp-abc.npz").write_bytes(b"")  # the old writer's temp name
        (run / where / ".tmp-abc.npy").write_bytes(b"\x93NUMPY")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Trace.load(run)
    assert list(t.steps) == list(range(15)) and t.extras == {}
    TraceWriter(run, mode="resume").close()  # the next writer removes its own kind only
    assert not any(p.name.endswith(".tmp") for p in run.rglob("*"))
    assert (run / "chunks" / ".tmp-abc.npz").exists()


def test_ctrl_c_during_a_chunk_write_loses_no_complete_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: Ctrl-C while a chunk is written; earlier chunks stay, no temp file stays."""
    run = tmp_path / "run"
    make_run(run, n_chunks=2)
    w = TraceWriter(run, mode="resume")

    def interrupted(fh: Any, **arrays: Any) -> None:
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(store.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        w.append(chunk(10, 5))
    monkeypatch.undo()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert list(Trace.load(run).steps) == list(range(10))
    w.append(chunk(10, 5))  # the writer's state is unchanged: the same chunk again
    assert list(Trace.load(run).steps) == list(range(15))


@pytest.fixture
def sigint_handler(request: pytest.FixtureRequest) -> Iterator[Any]:
    """SIGINT handled by ``request.param`` for the test (Python's own by default): a process
    started in the background (nohup, ``cmd &`` in a script, some CI runners) inherits SIGINT
    *ignored*, and Python then installs no handler, so a SIGINT raises nothing there."""
    handler = getattr(request, "param", signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)


def _append_with_sigint_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run of 5 steps; appends steps 5-9 with a SIGINT raised inside the chunk's write."""
    run = tmp_path / "run"
    make_run(run, n_chunks=1)
    w = TraceWriter(run, mode="resume")
    real = np.savez

    def signalled(fh: Any, **arrays: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        real(fh, **arrays)

    monkeypatch.setattr(store.np, "savez", signalled)
    try:
        w.append(chunk(5, 5))
    finally:
        monkeypatch.undo()
    return run


@pytest.mark.usefixtures("sigint_handler")
def test_a_sigint_during_a_write_waits_for_the_complete_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (SIGINT) arriving mid-write is raised once the chunk is safely on disk."""
    with pytest.raises(KeyboardInterrupt):
        _append_with_sigint_mid_write(tmp_path, monkeypatch)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert list(Trace.load(tmp_path / "run").steps) == list(range(10))


@pytest.mark.parametrize("sigint_handler", [signal.SIG_IGN], indirect=True)
@pytest.mark.usefixtures("sigint_handler")
def test_a_process_that_ignores_sigint_keeps_ignoring_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under SIG_IGN (a background job) the writer installs no handler of its own: the
    SIGINT stays ignored, the chunk is written and listed, the handler is still SIG_IGN."""
    try:
        run = _append_with_sigint_mid_write(tmp_path, monkeypatch)
    except KeyboardInterrupt:
        pytest.fail("the writer raised a Ctrl-C that the process ignores")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert list(Trace.load(run).steps) == list(range(10))


def test_one_writer_per_run_dir_in_this_process(tmp_path: Path) -> None:
    """Defect 3: a second writer (same process) on the same folder is refused, naming the pid."""
    w = TraceWriter(tmp_path / "run")
    with pytest.raises(GradientFlowError, match=rf"run.*process {os.getpid()} \(this process\)"):
        TraceWriter(tmp_path / "run", mode="resume")
    w.close()
    TraceWriter(tmp_path / "run", mode="resume").close()


def test_two_monitors_on_one_log_dir_are_refused(tmp_path: Path) -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = gradientflow.watch(model, opt, log_dir=tmp_path / "run")
    with pytest.raises(GradientFlowError, match="being written by process"):
        gradientflow.watch(model, opt, log_dir=tmp_path / "run")
    assert first.close() is None  # nothing recorded; the lock is given back
    gradientflow.watch(model, opt, log_dir=tmp_path / "run").close()


def test_another_process_holds_the_lock_until_it_is_killed(tmp_path: Path) -> None:
    """Defect 3 across processes; a lock left by a SIGKILLed writer is taken over."""
    run = tmp_path / "run"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            held = TraceWriter(run)  # noqa: F841 - kept alive: it holds the lock
            os.write(write, b"locked")
            signal.pause()
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 6) == b"locked"
        with pytest.raises(
            GradientFlowError, match=rf"{run.name} is being written by process {pid}"
        ):
            TraceWriter(run, mode="resume")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
    assert (run / ".gradientflow.lock").read_text().strip() == str(pid)  # stale lock file
    with TraceWriter(run, mode="resume") as w:
        w.write_meta(LAYERS, {})
    assert (run / ".gradientflow.lock").read_text().strip() == str(os.getpid())


def test_modes_new_overwrite_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run, n_chunks=2)
    (run / "notes.txt").write_text("mine")
    (run / "chunks" / "keep.npz").write_bytes(b"user file")
    with pytest.raises(
        GradientFlowError, match=r"already holds a trace.*overwrite=True.*resume=True"
    ):
        TraceWriter(run)
    with TraceWriter(run, mode="resume") as w:
        assert (w.n_records, w.next_step) == (10, 10)
        assert [x.name for x in w.layers or []] == ["fc1", "fc2"]
        w.write_meta(LAYERS, {"note": "resumed"})
        with pytest.raises(GradientFlowError, match="steps must increase"):
            w.append(chunk(9, 3))
        w.append(chunk(10, 3))
        with pytest.raises(GradientFlowError, match="has layers"):
            w.write_meta([LayerInfo("other"), LayerInfo("fc2")], {})
    t = Trace.load(run)
    assert list(t.steps) == list(range(13)) and t.meta == {"note": "resumed"}
    np.testing.assert_array_equal(t.metrics["grad_norm"][:, 1], 2.0 * np.arange(1, 14))
    with TraceWriter(run, mode="overwrite") as w:
        w.write_meta([LayerInfo("x")], {})
        w.append(chunk(0, 1, n=1))
    assert Trace.load(run).layer_names == ["x"] and Trace.load(run).n_records == 1
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "chunks" / "keep.npz").read_bytes() == b"user file"
    with pytest.raises(GradientFlowError, match="mode must be one of"):
        TraceWriter(tmp_path / "other", mode="append")


def test_save_never_deletes_foreign_files_and_never_replaces_unasked(tmp_path: Path) -> None:
    """Defect 6: Trace.save deleted unrelated *.npz/*.npy and silently replaced a run."""
    run = tmp_path / "run"
    (run / "chunks").mkdir(parents=True)
    (run / "extras").mkdir()
    foreign = [run / "data.npz", run / "chunks" / "weights.npz", run / "extras" / "x.npy"]
    for f in foreign:
        f.write_bytes(b"not ours")
    t = Trace.build(["a"], steps=[0, 1], grad_norm=[[1.0], [2.0]])
    t.save(run)
    with pytest.raises(GradientFlowError, match="already holds a trace"):
        t.save(run)
    Trace.build(["b"], steps=[0], grad_norm=[[3.0]]).save(run, overwrite=True)
    assert Trace.load(run).layer_names == ["b"]
    assert all(f.read_bytes() == b"not ours" for f in foreign)


def test_writes_never_follow_symlinks(tmp_path: Path) -> None:
    """Defect 6: report.html / diagnosis.json / a chunk linking outside the run dir."""
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    for name in ("report.html", "diagnosis.json"):
        (run / name).symlink_to(victim)
        write_file(run, name, "<p>new</p>")
        assert not (run / name).is_symlink() and (run / name).read_text() == "<p>new</p>"
    (run / "chunks").mkdir()
    (run / "chunks" / "00000000.npz").symlink_to(victim)
    (run / "meta.json").symlink_to(victim)
    with TraceWriter(run, mode="overwrite") as w:
        w.write_meta(LAYERS, {})
        w.append(chunk(0, 2))
    assert not (run / "meta.json").is_symlink() and Trace.load(run).n_records == 2
    assert victim.read_text() == "keep me"
    other = tmp_path / "run2"
    other.mkdir()
    (other / "chunks").symlink_to(outside, target_is_directory=True)
    with pytest.raises(GradientFlowError, match="is a symlink"):
        Trace.build(["a"], steps=[0]).save(other)
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    for bad in ("../escape.txt", "/etc/passwd", ""):
        with pytest.raises(GradientFlowError, match="relative name"):
            write_file(run, bad, "x")


def test_run_files_get_normal_permissions(tmp_path: Path) -> None:
    """Item 10: run files were created 0600."""
    old = os.umask(0o022)
    try:
        run = Trace.build(["a"], steps=[0], extras={"e": np.ones(2)}).save(tmp_path / "run")
        path = write_file(run, "report.html", "x")
    finally:
        os.umask(old)
    for f in [*run.rglob("*.np[yz]"), run / "meta.json", run / "manifest.json", path]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


NAMES = ["__", "a__b", "/", "a/b", "a b", "", " ", ".", ".."]
NAMES += ["é漢🙂", "\x1b[31mred", "tab\tnl\n", "\x00"]


def test_any_name_round_trips(tmp_path: Path) -> None:
    """Item 10: extras named "__" reloaded as "/"; names with spaces were refused."""
    layers = [f"layer {n}" for n in NAMES] + ["\ud800 lone surrogate"]
    extras = {n: np.full(2, float(i)) for i, n in enumerate(NAMES)}
    t = Trace.build(layers, steps=[3], extras=extras, meta={"k\x00": "v\n"})
    u = Trace.load(t.save(tmp_path / "run"))
    assert u.layer_names == layers
    assert list(u.extras) == NAMES
    for i, n in enumerate(NAMES):
        np.testing.assert_array_equal(u.extras[n], np.full(2, float(i)))
    assert u.meta == {"k\x00": "v\n"}


def test_bad_writes_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "run") as w:
        with pytest.raises(GradientFlowError, match="write_meta first"):
            w.append(chunk(0, 2))
        w.write_meta(LAYERS, {})
        for bad in (
            {"steps": [0, 0], "s.loss": [1.0, 1.0]},
            {"steps": [0], "m.grad_norm": np.ones((1, 3))},
            {"steps": [0], "s.loss": np.array(["abc"])},
            {"steps": [0], "m.gradnorm": np.ones((1, 2))},
        ):
            with pytest.raises(GradientFlowError):
                w.append(bad)
        with pytest.raises(GradientFlowError, match="must hold numbers or strings"):
            w.write_extra("x", np.array(["a"], dtype=object))
    assert Trace.load(tmp_path / "run").n_records == 0


def _refused_saves() -> list[tuple[str, Trace]]:
    from gradientflow.schema import LayerInfo

    circular: dict[str, object] = {}
    circular["self"] = circular
    return [
        ("steps must increase", Trace.build(["fc1"], steps=[5, 1], grad_norm=[[1.0], [2.0]])),
        (
            "must hold numbers or strings",
            Trace.build(
                ["fc1"], steps=[0], grad_norm=[[1.0]], extras={"x": np.array([None], dtype=object)}
            ),
        ),
        ("cannot be written as JSON", Trace.build(["fc1"], steps=[0], meta=circular)),
        (
            "'kind' must be str",
            Trace.build([LayerInfo("fc1", kind=None)], steps=[0]),  # type: ignore[arg-type]
        ),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_trace_that_cannot_be_saved_leaves_the_old_run_intact(tmp_path: Path, case: int) -> None:
    """Everything the writer or a later load would refuse is checked before the old run's
    files are removed: the run in the folder still loads, whole."""
    message, bad = _refused_saves()[case]
    good = Trace.build(
        ["a", "b"], steps=[0, 1, 2], grad_norm=np.ones((3, 2)), extras={"keep": np.arange(3.0)}
    )
    good.save(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(GradientFlowError, match=message):
        bad.save(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    back = Trace.load(tmp_path)
    assert back.layer_names == ["a", "b"] and back.steps.tolist() == [0, 1, 2]
    assert back.extras["keep"].tolist() == [0.0, 1.0, 2.0]
    empty = tmp_path / "new"
    with pytest.raises(GradientFlowError, match=message):
        bad.save(empty)
    assert not (empty / "meta.json").exists()
