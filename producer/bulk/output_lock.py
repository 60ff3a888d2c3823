"""One run per output, and an output that can be written, both known before anything is sent.

Two runs on the same output (an overlapping cron) would write the same part files
and remove each other's work directory: the second now stops at once. The lock is an
exclusive ``flock`` on ``OUT.inferq-lock`` beside the output: advisory, and released
by the kernel when its process dies, however it dies (kill -9 included), so a stale
file never blocks a later run. A folder the command cannot write in, or an ``-o``
that is a folder, is a usage error naming the path, its owner and this process's
uid: a rerun cannot help, a change of owner or path can.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

LOCK_SUFFIX = ".inferq-lock"
# errnos that only a change of path or permission cures (not a full disk: freeing
# space and a rerun with --resume does).
PATH_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT}
)


class OutputUnusable(Exception):
    """The output cannot be written by this run: busy, or a path or permission problem."""


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + LOCK_SUFFIX)


def check_writable(output: Path, work_dir: Path) -> None:
    """Refuse an output whose folder (or the run's work directory) this process cannot
    write in, naming what to change; an ``-o`` that names a folder."""
    folder = output.parent
    if not folder.is_dir():
        raise OutputUnusable(
            f"the output's folder {folder} does not exist: create it, or choose another -o"
        )
    if output.is_dir():
        raise OutputUnusable(f"-o {output} is a folder: name a file in it")
    for path in (folder, work_dir):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise OutputUnusable(not_writable(path))


def not_writable(path: Path) -> str:
    """What to change so that this process can write in ``path``."""
    uid = os.geteuid()
    try:
        st = path.stat()
        owner = f"owned by uid {st.st_uid}, mode {st.st_mode & 0o7777:o}"
    except OSError as exc:
        owner = exc.strerror or "unreadable"
    return (
        f"cannot write in {path} ({owner}); this command runs as uid {uid}: make it "
        f"writable for uid {uid} (e.g. chown {uid} {path}), run as its owner, or choose "
        "another -o"
    )


def path_problem(exc: OSError) -> str | None:
    """The one line for an OSError that only a change of path or permission cures, else None."""
    if exc.errno not in PATH_ERRNOS:
        return None
    name = exc.filename
    if exc.errno in (errno.EACCES, errno.EPERM) and name:
        folder = Path(name) if Path(name).is_dir() else Path(name).parent
        return f"{exc.strerror}: {name}: " + not_writable(folder)
    if exc.errno == errno.EROFS:
        return f"{name} is on a read-only file system: choose another -o"
    return f"{exc.strerror}: {name}: check the path"


@contextmanager
def output_lock(output: Path, command: str, work_dir: Path) -> Iterator[None]:
    """Hold the output's lock for the block; OutputUnusable if another run holds it."""
    check_writable(output, work_dir)
    path = lock_path(output)
    fd = _locked(path, output, command)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        # Removed while still held: a run that opened the old file re-checks it (_locked).
        with suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _locked(path: Path, output: Path, command: str) -> int:
    """An open, exclusively locked descriptor of the lock file at ``path``."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            raise OutputUnusable(not_writable(path.parent)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputUnusable(f"another {command} (pid {holder}) is writing {output}") from None
        # The run that held it may have removed the file between our open and our lock
        # (and a third run made a new one): a lock on a removed file guards nothing.
        if _same_file(fd, path):
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    """The holder's pid as it wrote it (it writes it just after locking: maybe not yet)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"
