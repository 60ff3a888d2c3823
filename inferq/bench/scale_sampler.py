"""What the hosts saw during one round of `inferq bench scale`, sampled every few ms:
the depth of the round's queue and each host's cgroup counters (CPU, CFS periods,
throttling).

A round's figure is only a host's capacity if, over the window it is measured in,
every host had work waiting (the queue never ran dry) and ran at its cap. The
samples say both, and bound the window (inferq.bench.scale_window).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis

from inferq.bench.cgroups import CpuGroup

INTERVAL_S = 0.02  # 5 samples per 100 ms CFS period: enough to see a period's throttling


def redis_cpu_s(client: redis.Redis) -> float | None:
    try:
        # redis-py types its sync and asyncio clients as one: this one returns a dict.
        info = cast("dict[str, Any]", client.info("cpu"))
    except redis.RedisError:
        return None  # e.g. an ACL user without INFO: the figure is left out, not faked
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    t: float  # CLOCK_MONOTONIC, the clock the producers' reports use
    depth: int  # messages waiting in the round's queue (not yet taken by any host)
    stored: int  # keys in Redis: one more per job result a host stored (DBSIZE)
    usage_s: tuple[float, ...]  # each host's CPU so far (cpuacct / usage_usec)
    periods: tuple[int, ...]  # each host's CFS periods with runnable threads so far
    throttled: tuple[int, ...]  # ... of which ended with the host throttled
    held_s: tuple[float, ...]  # each host's time throttled so far (v1: summed over CPUs)
    redis_s: float | None  # redis-server's CPU so far (None: INFO refused)
    machine_s: float  # the whole machine's busy CPU so far


def take(rds: redis.Redis, queue: str, groups: Sequence[CpuGroup]) -> Sample:
    bandwidth = [g.bandwidth() for g in groups]
    return Sample(
        t=time.monotonic(),
        # redis-py types its sync and asyncio clients as one: this one returns an int.
        depth=cast(int, rds.llen(queue)),
        stored=cast(int, rds.dbsize()),
        usage_s=tuple(g.usage_s() for g in groups),
        periods=tuple(b[0] for b in bandwidth),
        throttled=tuple(b[1] for b in bandwidth),
        held_s=tuple(b[2] for b in bandwidth),
        redis_s=redis_cpu_s(rds),
        machine_s=machine_busy_s(),
    )


def stored_answers(samples: Sequence[Sample], go: float) -> list[tuple[float, int]]:
    """(when, results stored since the sample before) for every sample after ``go``: the
    hosts' answers counted where they land, not when a producer reads them (a producer
    short of CPU reads late, in bursts). Job results only: bulk's chunk results are
    deleted by their producer as it collects them."""
    after = [s for s in samples if s.t > go]
    before = [s for s in samples if s.t <= go][-1:] or after[:1]
    pairs = zip(before + after, after, strict=False)
    return [(b.t, b.stored - a.stored) for a, b in pairs if b.stored > a.stored]


class Sampler:
    """``with Sampler(take_one) as s: ...``: ``take_one()`` every INTERVAL_S on a thread
    of this (uncapped) process, from entry to exit; ``s.samples`` afterwards."""

    def __init__(self, take_one: Callable[[], Sample], interval_s: float = INTERVAL_S) -> None:
        self._take = take_one
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scale-sampler", daemon=True)
        self.samples: list[Sample] = []
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while True:
                self.samples.append(self._take())
                # The event's wait is the sampling clock, and lets exit stop it at once.
                if self._stop.wait(self._interval_s):
                    break
        except (OSError, redis.RedisError) as exc:
            self.error = exc  # the round goes on; its report says samples are missing

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is None:
            self.samples.append(self._take())  # the last one at the end of the round
