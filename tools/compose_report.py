"""One PASS or FAIL line per check of tools/compose_check.py, and the count of each."""

from __future__ import annotations

import traceback
from collections.abc import Callable


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.prefix = ""  # "sentinel: " while the sentinel profile runs

    def line(self, ok: bool, name: str, figure: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {self.prefix}{name}: {figure}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def guard(self, name: str, check: Callable[[], object]) -> None:
        """Run CHECK (which prints its own lines); an exception out of it is a FAIL."""
        try:
            check()
        except Exception as exc:  # any error of a check is that check's FAIL, not the run's end
            last = traceback.format_exception_only(exc)[-1].strip()
            self.line(False, name, last)
