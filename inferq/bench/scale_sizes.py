"""The sizes of an `inferq bench scale` run: one definition, which the command line's
defaults read too (this module imports nothing heavy, so `inferq --help` stays quick)."""

from __future__ import annotations

from dataclasses import dataclass

WORKLOADS = ("stream", "bulk", "vision", "celery_noop")


@dataclass(frozen=True)
class ScaleSizes:
    hosts: tuple[int, ...] = (1, 2, 4)
    # 4 hosts x 0.15 core leave ~1.4 of the machine's 2 cores to Redis, the producers
    # and the kernel's bridge: enough for each workload's 4-host rate (docs/scaling.md).
    host_cpu: float = 0.15
    producers: int = 2
    jobs_per_host: int = 800
    images_per_host: int = 40
    rows_per_host: int = 800_000
    rounds: int = 3
    workloads: tuple[str, ...] = WORKLOADS

    def per_host(self, workload: str) -> int:
        return {
            "stream": self.jobs_per_host,
            "celery_noop": self.jobs_per_host,
            "vision": self.images_per_host,
            "bulk": self.rows_per_host,
        }[workload]


DEFAULT = ScaleSizes()
