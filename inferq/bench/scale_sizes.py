"""The sizes of an `inferq bench scale` run: one definition, which the command line's
defaults read too (this module imports nothing heavy, so `inferq --help` stays quick)."""

from __future__ import annotations

from dataclasses import dataclass

WORKLOADS = ("stream", "bulk", "vision", "celery_noop")
STREAM_JOBS = 6000
NOOP_JOBS = 2000


@dataclass(frozen=True)
class ScaleSizes:
    hosts: tuple[int, ...] = (1, 2, 4)
    # 4 hosts x 0.15 core leave ~1.4 of the machine's 2 cores to Redis, the producers
    # and the kernel's bridge: enough for each workload's 4-host rate (docs/scaling.md).
    host_cpu: float = 0.15
    producers: int = 2
    # A round at 0.25 core lasts ~9 s (stream), ~15 s (no-op), ~13 s (vision), ~5 s
    # (bulk): long enough that a host's periodic pauses weigh little, and that the queue
    # outlasts the hosts' job slots (128 jobs, 32 images) so every host has work to the
    # end of the window. ``jobs_per_host`` None: STREAM_JOBS for stream, NOOP_JOBS for
    # the no-op; a number: that many for both. Stream rounds of 2,000 jobs had become
    # ~3 s once the worker sped up, and their rates spread ±21-27% (docs/scaling.md).
    jobs_per_host: int | None = None
    images_per_host: int = 160
    rows_per_host: int = 1_200_000
    rounds: int = 3
    workloads: tuple[str, ...] = WORKLOADS

    def per_host(self, workload: str) -> int:
        return {
            "stream": self.jobs_per_host or STREAM_JOBS,
            "celery_noop": self.jobs_per_host or NOOP_JOBS,
            "vision": self.images_per_host,
            "bulk": self.rows_per_host,
        }[workload]


DEFAULT = ScaleSizes()
