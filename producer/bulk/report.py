"""How a bulk run reports: its progress (a tqdm bar on a terminal, plain log lines
otherwise) and its summary (the last line, `--summary-json`, the exit code)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    def __init__(
        self, total: int | None, unit: str, stream: TextIO | None = None, every_s: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
        self.total = total
        self.done = 0
        self.every_s = every_s
        self.started = self._last = time.monotonic()
        tty = self.stream.isatty()
        self._bar = tqdm(total=total, unit=unit, unit_scale=True, file=self.stream) if tty else None

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            eta = f" eta={max(self.total - self.done, 0) / rate:.0f}s"
        return f"inferq: {self.done}{of} {self.unit} rate={rate:.0f}/s{eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def process_cpu_s() -> float:
    """This process's CPU seconds so far, every thread's (a summary's ``cpu_s``)."""
    times = os.times()
    return times.user + times.system


@dataclass
class Summary:
    output: Path
    unit: str = "rows"
    rows: int = 0
    ok: int = 0
    failed: int = 0
    chunks: int = 0
    resumed_chunks: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # this process's CPU (every thread) over those seconds
    unscored_chunks: int = 0
    model_restarts: int = 0  # the workers' model changed mid-run this many times
    first_chunk_error: str | None = None
    first_row_errors: list[str] = field(default_factory=list)

    def count(self, ok: int, failed: int) -> None:
        self.rows += ok + failed
        self.ok += ok
        self.failed += failed

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if k != "output"},
            "output": str(self.output),
            "rows_per_s": round(self.rows_per_s, 1),
        }

    def line(self) -> str:
        return (
            f"inferq: scored {self.rows} {self.unit}: ok={self.ok} failed={self.failed} "
            f"in {self.seconds:.1f} s ({self.rows_per_s:.0f} {self.unit}/s) -> {self.output}"
        )
