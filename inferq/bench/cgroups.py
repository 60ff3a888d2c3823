"""A CPU cap for a group of processes: a cgroup with a CFS quota, v1 or v2.

Where the kernel has mounted the ``cpu`` controller decides which interface applies:
cgroup v1 (a ``cgroup`` mount with the ``cpu`` option: ``cpu.cfs_quota_us``, ``cpu.shares``)
or v2 (the unified ``cgroup2`` mount with ``cpu`` in ``cgroup.controllers``: ``cpu.max``,
``cpu.weight``). Both are found from /proc/mounts, never assumed from a path.

A capped group also gets a large weight: the cap is then both the ceiling and, while
the machine has that much CPU at all, the floor, so uncapped producers outside cannot
starve a simulated host below its budget.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from inferq.bench.phases import cpu_seconds

PERIOD_US = 100_000
# v1 cpu.shares (default 1024) and v2 cpu.weight (default 100), each 10 x the default.
HIGH_WEIGHT = {1: ("cpu.shares", "10240"), 2: ("cpu.weight", "1000")}
NAME_PREFIX = "inferq-bench"


class CgroupError(RuntimeError):
    """No usable cpu controller, or a cgroup file could not be written."""


@dataclass(frozen=True)
class CpuController:
    version: int  # 1 or 2
    root: Path  # where new groups are made
    # v1 only: where the cpuacct controller is mounted (the same path where it shares the
    # cpu mount). Its ``cpuacct.usage`` counts every thread that ever ran in the group, to
    # the nanosecond, where /proc of the live processes counts clock ticks of live ones.
    acct_root: Path | None = None


def find_cpu_controller(mounts: str | None = None) -> CpuController:
    """The mounted cpu controller (v1 preferred where both exist, as systemd hybrids
    keep the controllers on v1); CgroupError when there is none."""
    text = mounts if mounts is not None else Path("/proc/mounts").read_text()
    v1: dict[str, Path] = {}
    v2_roots = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup":
            for controller in {"cpu", "cpuacct"} & set(options):
                v1.setdefault(controller, Path(mountpoint))
        if fstype == "cgroup2":
            v2_roots.append(Path(mountpoint))
    if "cpu" in v1:
        return CpuController(1, v1["cpu"], v1.get("cpuacct"))
    for root in v2_roots:
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return CpuController(2, root)
    raise CgroupError("no cgroup cpu controller is mounted (neither v1 `cpu` nor v2 `cpu.max`)")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc}") from exc


def remove_stale_groups(controller: CpuController) -> None:
    """Remove empty groups of earlier runs whose making process is gone."""
    roots = {controller.root, controller.acct_root or controller.root}
    for group in (g for root in roots for g in root.glob(f"{NAME_PREFIX}-*")):
        match = re.match(rf"{NAME_PREFIX}-(\d+)-", group.name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            with contextlib.suppress(OSError):  # still holds a process: left for its owner
                group.rmdir()


class CpuGroup:
    """One cgroup: ``cap(cores)``, ``usage_s()``, ``throttled()``; removed by ``close()``."""

    def __init__(self, controller: CpuController, name: str) -> None:
        self.controller = controller
        self.path = controller.root / f"{NAME_PREFIX}-{os.getpid()}-{name}"
        self.acct_path: Path | None = None
        if controller.acct_root is not None and controller.acct_root != controller.root:
            self.acct_path = controller.acct_root / self.path.name
        self.cores: float | None = None

    def make(self) -> CpuGroup:
        if self.controller.version == 2:
            # A v2 group's cpu files exist only once its parent hands the controller down.
            _write(self.controller.root / "cgroup.subtree_control", "+cpu")
        for path in filter(None, (self.path, self.acct_path)):
            try:
                path.mkdir()
            except OSError as exc:
                raise CgroupError(f"cannot make cgroup {path}: {exc}") from exc
        key, weight = HIGH_WEIGHT[self.controller.version]
        _write(self.path / key, weight)
        return self

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    @property
    def procs_files(self) -> tuple[Path, Path]:
        """Where a process is written to join the group: the cpu group's file, then the
        cpuacct group's (the same file again where there is no separate one)."""
        acct = self.procs_file if self.acct_path is None else self.acct_path / "cgroup.procs"
        return self.procs_file, acct

    def cap(self, cores: float | None) -> None:
        """At most ``cores`` CPUs' worth of time per period for all the group's
        threads together; None lifts the cap."""
        quota = None if cores is None else max(1000, round(cores * PERIOD_US))
        if self.controller.version == 1:
            _write(self.path / "cpu.cfs_period_us", str(PERIOD_US))
            _write(self.path / "cpu.cfs_quota_us", "-1" if quota is None else str(quota))
        else:
            _write(self.path / "cpu.max", f"{'max' if quota is None else quota} {PERIOD_US}")
        self.cores = cores

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.procs_file.read_text().split()]
        except OSError:
            return []

    def usage_s(self) -> float:
        """CPU seconds used by the group's threads, exited ones included (v2's
        ``usage_usec``, v1's ``cpuacct.usage``); the live processes' where neither exists."""
        if self.controller.version == 2:
            return self._stat().get("usage_usec", 0) / 1e6
        acct = (self.acct_path or self.path) / "cpuacct.usage"
        if acct.exists():
            return int(acct.read_text()) / 1e9
        return sum(cpu_seconds(pid) or 0.0 for pid in self.pids())

    def throttled(self) -> tuple[int, float]:
        """(periods in which the group hit its cap, seconds it spent throttled)."""
        _, throttled, held_s = self.bandwidth()
        return throttled, held_s

    def bandwidth(self) -> tuple[int, int, float]:
        """cpu.stat's (periods with runnable threads, periods that ended throttled,
        seconds throttled: summed over CPUs on v1, so up to cores x wall time)."""
        stat = self._stat()
        if self.controller.version == 2:
            held_s = stat.get("throttled_usec", 0) / 1e6
        else:
            held_s = stat.get("throttled_time", 0) / 1e9
        return stat.get("nr_periods", 0), stat.get("nr_throttled", 0), held_s

    def _stat(self) -> dict[str, int]:
        try:
            lines = (self.path / "cpu.stat").read_text().splitlines()
        except OSError:
            return {}
        return {k: int(v) for k, v in (line.split() for line in lines if len(line.split()) == 2)}

    def close(self, timeout_s: float = 10.0) -> None:
        """Remove the group; its processes must be gone (a dying one may take a moment)."""
        deadline = time.monotonic() + timeout_s
        for path in filter(None, (self.path, self.acct_path)):
            while path.exists():
                try:
                    path.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # the last process leaving; deadline-bounded


def why_no_cgroups() -> str | None:
    """None when this process can make a capped cgroup; otherwise why not (tried)."""
    try:
        controller = find_cpu_controller()
        group = CpuGroup(controller, "probe").make()
        try:
            group.cap(0.5)
        finally:
            group.close()
    except (CgroupError, OSError) as exc:
        return str(exc)
    return None
