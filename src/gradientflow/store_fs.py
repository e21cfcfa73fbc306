"""File operations of a run directory: atomic no-follow writes, one lock per run, bounded reads.

Everything gradientflow writes goes through :func:`atomic_write`: the bytes go to a temporary
file beside the target (``.NAME.<pid>.<hex>.tmp``, a name no loader picks up), are fsynced, and
the file is renamed over the target. A rename replaces a symlink instead of writing through it,
so a ``report.html`` that links outside the run dir is replaced, never followed. Folders inside a
run dir must be real folders (a symlinked ``chunks/`` is refused). Files get the usual
permissions (0644 under a 022 umask). Ctrl-C during a write is held back until the file is
complete (a second Ctrl-C goes through at once).

>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(root / "note.txt", lambda fh: fh.write(b"hello"))
>>> (root / "note.txt").read_bytes()
b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gradientflow.errors import GradientFlowError

TMP_SUFFIX = ".tmp"
LOCK_NAME = ".gradientflow.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class Damage(GradientFlowError):
    """A malformed or unreadable file of a run dir; ``what`` names the file and the problem."""

    def __init__(self, what: str) -> None:
        self.what = "".join(c if c.isprintable() else " " for c in what)
        super().__init__(self.what)


def shown(path: object) -> str:
    """``path`` as text for a one-line message (control characters escaped)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def is_tmp_name(name: str) -> bool:
    """True for the temporary files :func:`atomic_write` leaves behind when killed."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def ensure_dir(path: Path) -> Path:
    """Create folder ``path`` (one level) if missing; refuse a symlink or a non-folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise GradientFlowError(f"cannot create folder {shown(path)}: {exc.strerror}") from exc
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise GradientFlowError(
            f"{shown(path)} is a symlink; gradientflow writes only into real folders of a run dir"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise GradientFlowError(f"{shown(path)} exists and is not a folder")
    return path


def ensure_root(path: Path) -> Path:
    """Create the run folder ``path`` and its parents; the run folder itself may be a symlink."""
    if path.exists() and not path.is_dir():
        raise GradientFlowError(f"{shown(path)} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GradientFlowError(f"cannot create folder {shown(path)}: {exc.strerror}") from exc
    return path


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back one Ctrl-C until the block is done, then raise it (main thread only)."""
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if on_main else None
    if previous is not signal.default_int_handler:
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if pending:  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary file, fsync, rename; never through a symlink."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY
    with sigint_deferred():
        try:
            fd = os.open(tmp, flags, 0o666)
        except OSError as exc:
            raise GradientFlowError(f"cannot write {shown(path)}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise GradientFlowError(f"cannot write {shown(path)}: {exc.strerror}") from exc
            raise
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in folder ``path`` durable (where the platform allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_own(path: Path) -> None:
    """Remove a file gradientflow wrote (missing is fine); never a folder."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def open_regular(path: Path, limit: int, what: str = "file") -> Iterator[tuple[IO[bytes], int]]:
    """Open ``path`` for reading if it is a regular file of at most ``limit`` bytes.

    Yields ``(file, size)``. A symlink, FIFO, device or folder is refused without opening it
    for a blocking read; too large a file is refused before reading.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _BINARY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Damage(f"{shown(path)}: is a symlink, not a {what}") from exc
        raise Damage(f"{shown(path)}: cannot open: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Damage(f"{shown(path)}: not a regular file")
        if st.st_size > limit:
            raise Damage(f"{shown(path)}: {st.st_size} bytes, more than the limit of {limit}")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh, st.st_size


class RunLock:
    """One writer per run dir: an exclusive lock on ``DIR/.gradientflow.lock``.

    The operating system drops the lock when the holder exits or is killed, so a stale lock
    file is simply taken over. The file holds the holder's pid, for the error message.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._release: Callable[[], Any] | None = None

    @property
    def held(self) -> bool:
        return self._release is not None

    def acquire(self) -> None:
        if self._release is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _BINARY, 0o666)
        except OSError as exc:
            raise GradientFlowError(
                f"cannot lock run dir {shown(self.path.parent)}: {exc.strerror}"
            ) from exc
        if not _try_lock(fd):
            holder = _read_pid(fd)
            os.close(fd)
            mine = " (this process)" if holder == str(os.getpid()) else ""
            raise GradientFlowError(
                f"run dir {shown(self.path.parent)} is being written by process {holder}{mine}; "
                "one writer per run dir: use another log_dir (under DDP, write from rank 0 only)"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._release = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - not tested on this platform
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except (OSError, AttributeError):
        return "unknown"
    return text if text.isdigit() else "unknown"
