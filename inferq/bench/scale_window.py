"""One round of `inferq bench scale` as figures: the window it is measured in, the rate
there, and what each party used there.

The window runs from the moment 10% of the round's units were answered to the moment
90% were. It leaves out the start (hosts filling their job slots, the first passes)
and the tail (the last jobs held in one host's slots while the others have nothing
left to take), whose lengths do not grow with the round, and so would weigh
differently at each count. Inside the window the samples (inferq.bench.scale_sampler)
say whether the figure is a host's capacity at all: every host at its cap, work
waiting in the queue.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inferq.bench.scale_sampler import Sample

WINDOW = (0.1, 0.9)  # the window's ends, as shares of the round's units answered
SATURATED_LOAD = 0.9  # a host under 90% of its cap in the window was waiting for work


@dataclass(frozen=True)
class Window:
    start: float  # CLOCK_MONOTONIC
    end: float
    units: int  # answered in (start, end]
    whole: bool = False  # no window could be measured: the whole round, first to last answer

    @property
    def rate(self) -> float:
        return self.units / max(self.end - self.start, 1e-3)


def window(completions: Sequence[Sequence[float]], shares: tuple[float, float] = WINDOW) -> Window:
    """From (when, units) answers: the window between the two shares of units answered.
    Answers come in bursts (a batch's jobs at once): the burst at the start counts
    before the window, the one at the end in it, so a burst's units span a burst's time."""
    done = sorted((float(t), int(u)) for t, u in completions)
    total = sum(u for _, u in done)
    cumulative, start, end = 0, None, None
    for t, units in done:
        cumulative += units
        if start is None and cumulative >= shares[0] * total:
            start = t
        if cumulative >= shares[1] * total:
            end = t
            break
    if start is None or end is None or end <= start:
        raise ValueError(f"{len(done)} answers in too few bursts to measure a window")
    return Window(start, end, sum(u for t, u in done if start < t <= end))


def span(samples: Sequence[Sample], start: float, end: float) -> tuple[Sample, Sample]:
    """The samples just around [start, end]: the last at or before it, the first at or after."""
    before = [s for s in samples if s.t <= start] or [samples[0]]
    after = [s for s in samples if s.t >= end] or [samples[-1]]
    return before[-1], after[0]


def depth_stats(samples: Sequence[Sample], start: float, end: float) -> dict[str, float]:
    """The queue the hosts saw in the window: its depth and the share of samples empty."""
    depths = [s.depth for s in samples if start <= s.t <= end] or [samples[-1].depth]
    return {
        "min": min(depths),
        "median": statistics.median(depths),
        "max": max(depths),
        "empty_share": round(sum(d == 0 for d in depths) / len(depths), 3),
        "samples": len(depths),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else 0.0


@dataclass(frozen=True)
class Round:
    rate: float  # units/s in the window: the round's figure
    rate_round: float  # units over the whole round, go to the last answer (for comparison)
    window_s: float
    elapsed_s: float
    failed: int
    hosts_cores: list[float]  # each host's CPU in the window, in cores (cgroup cpuacct)
    hosts_load: list[float]  # ... against its cap
    throttled_periods: list[float]  # share of each host's CFS periods that ended throttled
    throttled_s: list[float]  # each host's time held back by its cap (cpu.stat)
    host_cpu_us_per_unit: float  # all hosts' CPU per job, image or row: the cost of one
    producers_cores: float  # the producers, go to done
    producer_max_cores: float  # the busiest producer process
    redis_cores: float | None
    machine_cores: float
    depth: dict[str, float]
    load: dict[str, float]  # each party's CPU against its ceiling (inferq.bench.scale_report)
    load_avg_1m: float  # the machine's load average as the round ended (others' work too)
    windowed: bool  # False: too few bursts of answers for a window (a round too short)

    @classmethod
    def of(
        cls,
        w: Window,
        samples: Sequence[Sample],
        reports: Sequence[dict[str, Any]],
        cap: float,
        load_avg_1m: float,
    ) -> Round:
        a, b = span(samples, w.start, w.end)
        seconds = b.t - a.t
        go = min(r["started_at"] for r in reports)
        elapsed = max(r["done_at"] for r in reports) - go
        hosts = [round((y - x) / seconds, 3) for x, y in zip(a.usage_s, b.usage_s, strict=True)]
        periods = [y - x for x, y in zip(a.periods, b.periods, strict=True)]
        throttled = [y - x for x, y in zip(a.throttled, b.throttled, strict=True)]
        redis = None if None in (a.redis_s, b.redis_s) else (b.redis_s or 0) - (a.redis_s or 0)
        producers = [r["cpu_s"] / elapsed for r in reports]
        machine = (b.machine_s - a.machine_s) / seconds
        load = {
            "hosts": round(min(hosts) / cap, 3),  # the least busy host says if all were busy
            "producers": round(max(producers), 3),
            "redis": round(redis / seconds, 3) if redis is not None else 0.0,
            "machine": round(machine / (os.cpu_count() or 1), 3),
        }
        return cls(
            rate=round(w.rate, 1),
            rate_round=round(sum(r["jobs"] for r in reports) / elapsed, 1),
            window_s=round(w.end - w.start, 3),
            elapsed_s=round(elapsed, 2),
            failed=sum(r["failed"] for r in reports),
            hosts_cores=hosts,
            hosts_load=[round(h / cap, 3) for h in hosts],
            throttled_periods=[_ratio(t, p) for t, p in zip(throttled, periods, strict=True)],
            throttled_s=[round(y - x, 2) for x, y in zip(a.held_s, b.held_s, strict=True)],
            host_cpu_us_per_unit=round(sum(hosts) / w.rate * 1e6, 3),
            producers_cores=round(sum(producers), 3),
            producer_max_cores=round(max(producers), 3),
            redis_cores=None if redis is None else round(redis / seconds, 3),
            machine_cores=round(machine, 3),
            depth=depth_stats(samples, w.start, w.end),
            load=load,
            load_avg_1m=load_avg_1m,
            windowed=not w.whole,
        )

    @property
    def saturated(self) -> str:
        """The party closest to its ceiling."""
        return max(self.load, key=lambda party: self.load[party])

    @property
    def hosts_saturated(self) -> bool:
        """Every host ran at its cap through the window: the figure is the hosts' capacity."""
        return min(self.hosts_load) >= SATURATED_LOAD
