"""Loading run dirs: bounded, validating, one clear line per malformed file (defect 8)."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gradientflow import GradientFlowError, Trace
from gradientflow.cli import main
from gradientflow.errors import GradientFlowWarning
from gradientflow.store import TraceWriter
from gradientflow.trace import LAYER_METRICS, LayerInfo


def make_run(root: Path, n_chunks: int = 3, rows: int = 40) -> Path:
    rng = np.random.default_rng(0)
    with TraceWriter(root) as w:
        w.write_meta([LayerInfo("fc1"), LayerInfo("fc2"), LayerInfo("fc3")], {"note": "x"})
        for k in range(n_chunks):
            steps = np.arange(k * rows, (k + 1) * rows)
            cols = {f"m.{m}": rng.random((rows, 3)) for m in LAYER_METRICS}
            w.append({"steps": steps, "s.loss": rng.random(rows), **cols})
        w.write_extra("bptt/enc lstm/dl_dh", rng.random((2, 5)))
    return root


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def chunk_file(run: Path, k: int = 1) -> Path:
    return run / "chunks" / f"{k:08d}.npz"


def rewrite_chunk(run: Path, k: int, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    with np.load(chunk_file(run, k)) as z:
        arrays = {key: z[key] for key in z.files}
    change(arrays)
    chunk_file(run, k).write_bytes(npz_bytes(**arrays))


def edit_meta(run: Path, change: Callable[[dict], object]) -> None:
    doc = json.loads((run / "meta.json").read_text())
    change(doc)
    (run / "meta.json").write_text(json.dumps(doc))


CORRUPTIONS: dict[str, tuple[Callable[[Path], object], str]] = {
    "truncated chunk": (
        lambda r: chunk_file(r).write_bytes(chunk_file(r).read_bytes()[:700]),
        r"00000001\.npz: not a complete \.npz",
    ),
    "0-byte chunk": (lambda r: chunk_file(r).write_bytes(b""), r"00000001\.npz: not a complete"),
    "flipped data byte": (lambda r: _flip(chunk_file(r), 5000), r"00000001\.npz\[.*CRC"),
    "flipped central directory": (lambda r: _flip(chunk_file(r), -300), r"00000001\.npz"),
    "meta.json an array": (
        lambda r: (r / "meta.json").write_text("[1, 2]"),
        r"meta\.json: not a JSON object",
    ),
    "meta.json garbage": (
        lambda r: (r / "meta.json").write_bytes(b"\xff\xfe{{"),
        r"meta\.json: not valid JSON",
    ),
    "meta.json deeply nested": (
        lambda r: (r / "meta.json").write_text("[" * 100_000),
        r"meta\.json: not valid JSON",
    ),
    "no layers key": (lambda r: edit_meta(r, lambda d: d.pop("layers")), r"'layers' must be"),
    "layer without name": (
        lambda r: edit_meta(r, lambda d: d["layers"][1].pop("name")),
        r"layer 1 has no 'name'",
    ),
    "string where a number belongs": (
        lambda r: edit_meta(r, lambda d: d["layers"][0].update(n_params="12")),
        r"layer 0: 'n_params' must be int",
    ),
    "version a string": (lambda r: edit_meta(r, lambda d: d.update(version="2")), "version"),
    "newer version": (lambda r: edit_meta(r, lambda d: d.update(version=99)), "newer gradientflow"),
    "width mismatch": (
        lambda r: rewrite_chunk(r, 1, lambda a: a.update({"m.grad_norm": np.ones((40, 4))})),
        r"metric 'grad_norm' has shape \(40, 4\), expected \(40, 3\)",
    ),
    "string loss": (
        lambda r: rewrite_chunk(r, 1, lambda a: a.update({"s.loss": np.array(["abc"] * 40)})),
        r"\[s\.loss\]: holds <U3 values, not numbers",
    ),
    "unsorted steps": (
        lambda r: rewrite_chunk(r, 1, lambda a: a["steps"].__setitem__(slice(0, 2), [41, 40])),
        "not strictly increasing",
    ),
    "steps repeat an earlier chunk": (
        lambda r: rewrite_chunk(r, 1, lambda a: a.update(steps=a["steps"] - 1)),
        r"(start at 39, not after step 39|manifest\.json lists)",
    ),
    "unexpected member": (
        lambda r: rewrite_chunk(r, 1, lambda a: a.update({"m.bogus": np.ones((40, 3))})),
        "unexpected member 'm.bogus.npy'",
    ),
    "manifest garbage": (
        lambda r: (r / "manifest.json").write_text('{"format": 3}'),
        r"manifest\.json: not a gradientflow manifest",
    ),
    "damaged .npy header of an extra": (
        lambda r: _flip(r / "extras" / "00000.npy", 10),
        r"extras/00000\.npy: not a valid \.npy array",
    ),
    "extra holds a structured array": (
        lambda r: np.save(r / "extras" / "00000.npy", np.zeros(2, dtype=[("a", "<f8")])),
        r"extras/00000\.npy: holds .* values, not numbers",
    ),
    "chunk is a folder": (
        lambda r: (chunk_file(r).unlink(), chunk_file(r).mkdir()),
        "not a regular file",
    ),
}


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_malformed_run_gives_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    run = make_run(tmp_path / "run")
    corrupt, message = CORRUPTIONS[case]
    corrupt(run)
    with pytest.raises(GradientFlowError, match=message) as info:
        Trace.load(run)
    assert "\n" not in str(info.value) and str(run) in str(info.value)


def test_cli_show_prints_one_line_for_a_corrupt_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run")
    chunk_file(run).write_bytes(b"")
    assert main(["show", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "00000001.npz" in err[0] and "Traceback" not in err[0]


def test_damaged_skip_loads_the_rest_and_says_what_was_lost(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    chunk_file(run).write_bytes(chunk_file(run).read_bytes()[:500])
    with pytest.warns(GradientFlowWarning, match=r"40 records lost.*00000001\.npz"):
        t = Trace.load(run, damaged="skip")
    assert list(t.steps) == [*range(40), *range(80, 120)]
    assert t.meta["lost_on_load"]["records"] == 40


def test_a_missing_chunk_is_reported_with_its_records(tmp_path: Path) -> None:
    """Defect 8: a missing chunk loaded 70 of 120 records with no warning."""
    run = make_run(tmp_path / "run")
    chunk_file(run).unlink()
    with pytest.warns(GradientFlowWarning, match=r"40 records lost: .*00000001\.npz: missing"):
        t = Trace.load(run)
    assert t.n_records == 80 and t.meta["lost_on_load"]["records"] == 40
    assert t.meta["note"] == "x"
    # without the manifest the gap in the numbers still shows (its size unknown)
    (run / "manifest.json").unlink()
    with pytest.warns(GradientFlowWarning, match=r"1 chunk\(s\) of unknown size"):
        assert Trace.load(run).meta["lost_on_load"]["chunks_of_unknown_size"] == 1


def test_a_chunk_missing_one_metric_blanks_only_its_rows(tmp_path: Path) -> None:
    """Defect 8: a chunk missing one metric blanked that metric for the whole run."""
    run = make_run(tmp_path / "run")
    before = Trace.load(run).metrics["out_rms"].copy()
    rewrite_chunk(run, 1, lambda a: a.pop("m.out_rms"))
    after = Trace.load(run).metrics["out_rms"]
    assert np.isnan(after[40:80]).all()
    np.testing.assert_array_equal(after[:40], before[:40])
    np.testing.assert_array_equal(after[80:], before[80:])


@pytest.fixture
def alarm() -> Iterator[None]:
    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("a FIFO was opened for a blocking read")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", ["chunks/00000001.npz", "meta.json", "manifest.json"])
def test_a_fifo_is_never_opened(tmp_path: Path, name: str, alarm: None) -> None:
    """Defect 8: a FIFO named like a chunk hung `show`."""
    run = make_run(tmp_path / "run")
    (run / name).unlink()
    os.mkfifo(run / name)
    with pytest.raises(GradientFlowError, match="not a regular file"):
        Trace.load(run)


def _bomb_zip(declared: int, blocks: int) -> bytes:
    """One deflated member of `declared` zero bytes made of `blocks` repeated 1 MiB blocks."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(b"\0" * 2**20) + comp.flush(zlib.Z_FULL_FLUSH)
    raw = block * blocks + b"\x03\x00"
    name = b"m.grad_norm.npy"
    fields = (20, 0, 8, 0, 0x21, 0, len(raw), declared, len(name))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(raw), 0)
    return local + raw + central + end


def test_a_zip_bomb_chunk_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """Defect 8: a 10 MB zip-bomb chunk took 4.7 GB of memory."""
    run = make_run(tmp_path / "run")
    chunk_file(run).write_bytes(_bomb_zip(declared=4000 * 2**20, blocks=4000))
    assert chunk_file(run).stat().st_size > 3e6
    assert zipfile.ZipFile(chunk_file(run)).infolist()[0].file_size == 4000 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(GradientFlowError, match="zip bomb"):
            Trace.load(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, peak


def test_a_declared_shape_larger_than_the_data_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    buf = io.BytesIO()
    np.save(buf, np.ones((40, 3)))
    member = buf.getvalue().replace(b"(40, 3), }" + b" " * 7, b"(400000000, 3), }", 1)
    with np.load(chunk_file(run)) as z:
        others = {k: z[k] for k in z.files if k != "m.grad_norm"}
    with zipfile.ZipFile(chunk_file(run), "w") as zf:
        zf.writestr("m.grad_norm.npy", member)
        for key, arr in others.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(f"{key}.npy", buf.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(GradientFlowError, match=r"npz\[m\.grad_norm\]: declares shape"):
            Trace.load(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, peak


def test_max_bytes_bounds_what_is_read(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with pytest.raises(GradientFlowError, match="max_bytes=20000"):
        Trace.load(run, max_bytes=20_000)
    assert Trace.load(run, max_bytes=200_000).n_records == 120


def test_a_format_1_run_still_loads(tmp_path: Path) -> None:
    """Runs written before the manifest (format 1: extras named after the extra)."""
    run = tmp_path / "old"
    (run / "chunks").mkdir(parents=True)
    (run / "extras").mkdir()
    layers = [{"name": "fc", "kind": "Linear", "n_params": 3, "trainable": True}]
    doc = {"format": "gradientflow-trace", "version": 1, "layers": layers, "meta": {"a": 1}}
    (run / "meta.json").write_text(json.dumps(doc))
    for k in range(2):
        data = npz_bytes(steps=np.array([k]), **{"m.grad_norm": np.array([[k + 0.5]])})
        chunk_file(run, k).write_bytes(data)
    (run / "chunks" / ".tmp-x.npz").write_bytes(b"")
    np.save(run / "extras" / "bptt__rnn__dl_dh.npy", np.arange(3.0))
    t = Trace.load(run)
    assert list(t.steps) == [0, 1] and t.metrics["grad_norm"][:, 0].tolist() == [0.5, 1.5]
    assert list(t.extras) == ["bptt/rnn/dl_dh"] and t.meta == {"a": 1}
