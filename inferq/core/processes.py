"""What the handles on servers and processes share: start/close as a context
manager, and a stop that signals, waits, then kills."""

from __future__ import annotations

import os
import signal
import subprocess
from types import TracebackType
from typing import Self, TextIO


def announce(line: str, stream: TextIO | None) -> None:
    """One whole line in one write: the processes of `--concurrency N` share a log
    file, and print()'s separate write of the newline let two lines merge into one."""
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def stop_process(
    process: subprocess.Popen[bytes],
    timeout_s: float,
    sig: int = signal.SIGTERM,
    *,
    whole_group: bool = False,
) -> int:
    """Send ``sig``, wait up to ``timeout_s``, then SIGKILL (its process group if asked)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            if whole_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()
    return process.returncode


class Managed:
    """``with Thing() as t:`` runs ``t.start()`` and, whatever happens (a failed or
    interrupted start included), ``t.close()``; ``close`` must work after a partial start."""

    def start(self) -> Self:
        return self

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        # A start interrupted half-way (Ctrl-C, SIGTERM, a timeout) must not leave a
        # child running: __exit__ is not called when __enter__ raises.
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
