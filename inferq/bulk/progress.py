"""Progress of a bulk run: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

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
