"""The CLI's face: --help with examples for every command, --version, and one-line errors
(exit status 2, never a traceback) for outputs that cannot be written."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradientflow import __version__
from gradientflow.cli import COMMANDS, main
from gradientflow.trace import Trace


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradientflow: error: "), err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture
def saved_run(tmp_path: Path) -> Path:
    trace = Trace.build(["fc0", "fc1"], steps=[0, 1], grad_norm=[[1e-3, 1.0], [1e-3, 1.0]])
    return trace.save(tmp_path / "run")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only tmpfs (needs root and mount(8)); skipped where unavailable."""
    where = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a read-only filesystem needs root")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: gradientflow {command}" in text
    examples = text[text.index("examples:") :]
    assert f"  gradientflow {command}" in examples


def test_top_level_help_lists_the_commands_and_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS) and "examples:" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradientflow {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "gradientflow", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == f"gradientflow {__version__}"


def test_out_under_a_regular_file_is_one_line(
    tmp_path: Path, saved_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["diagnose", "--out", str(blocker / "run")]) == 2
    _one_line_error(capsys, "--out", "is a file, not a folder")
    assert main(["report", str(saved_run), "-o", str(blocker / "r.html")]) == 2
    _one_line_error(capsys, "-o", "is a file, not a folder")
    assert main(["trial", "--remedies", "add_batchnorm", "--out", str(blocker / "t")]) == 2
    _one_line_error(capsys, "is a file, not a folder")
    assert main(["report", str(saved_run), "-o", str(saved_run)]) == 2  # a folder, not a file
    _one_line_error(capsys, "is a folder")


def test_lab_out_an_existing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("x")
    assert main(["lab", "--out", str(blocker), "--no-progress", "mean-field"]) == 2
    _one_line_error(capsys, "--out", "is a file, not a folder")
    assert blocker.read_text() == "x"


def test_read_only_filesystem_is_one_line(
    read_only_dir: Path, saved_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", "--out", str(read_only_dir / "run")]) == 2
    _one_line_error(capsys, "--out", "cannot write")
    assert main(["report", str(saved_run), "-o", str(read_only_dir / "r.html")]) == 2
    _one_line_error(capsys, "-o", "Read-only file system")
    assert main(["lab", "--out", str(read_only_dir / "lab")]) == 2
    _one_line_error(capsys, "--out", "Read-only file system")


def test_read_only_errors_without_root(
    tmp_path: Path,
    saved_run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where no read-only filesystem can be mounted, the same errors from the OS itself."""

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "touch", refuse)
    assert main(["diagnose", "--out", str(tmp_path / "new")]) == 2
    _one_line_error(capsys, "--out", os.strerror(errno.EROFS))
    assert main(["report", str(saved_run), "-o", str(tmp_path / "r.html")]) == 2
    _one_line_error(capsys, "-o", os.strerror(errno.EROFS))


def test_an_unforeseen_os_error_is_still_one_line(
    saved_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradientflow.report.html as html

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "report.html")

    monkeypatch.setattr(html, "write_html", full_disk)
    assert main(["report", str(saved_run)]) == 2
    _one_line_error(capsys, "report.html", os.strerror(errno.ENOSPC))


def test_multi_line_errors_are_joined_into_one(capsys: pytest.CaptureFixture[str]) -> None:
    from gradientflow.cli import _fail

    with contextlib.redirect_stderr(sys.stderr):
        assert _fail("first\n  second\x1b[2J") == 2
    line = _one_line_error(capsys, "first; second")
    assert "\x1b" not in line
