"""Idle CPUs that poll instead of halting, for the length of a scale run.

On a virtual machine (here a KVM/Firecracker guest with the ``haltpoll`` cpuidle
driver and ``guest_halt_poll_ns=0``), an idle vCPU halts at once: the hypervisor may
give its core to another guest, and the vCPU comes back to cold caches. A lone
0.25-core host leaves the machine idle ~70% of the time, four hosts ~15%, so each
count ran on differently shared cores: one stream job cost a lone host 418 µs of CPU
and each of four hosts 349 (efficiency 1.20, a curve above linear). With the guest
polling through idle periods, a lone host's job cost 308 µs, its rounds within ±7%,
and the curve fell below linear (docs/scaling.md, "Why a lone host was slow").

Polling runs in the idle loop: it is counted as idle in /proc/stat (the machine's
busy figure stays true) and gives way the moment any thread is runnable, so it takes
no CPU from the hosts, the producers or Redis. A busy-loop "ballast" at SCHED_IDLE was
tried first: it kept the vCPUs awake too, but four capped hosts then got only 0.8 of
their caps. The old values are put back when the run ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inferq.bench.phases import log

PARAMETERS = Path("/sys/module/haltpoll/parameters")
# Longer than any idle gap of a round (a host throttled for 75 ms of each 100-ms period).
POLL_NS = 200_000_000
_WANTED = {
    "guest_halt_poll_ns": str(POLL_NS),
    "guest_halt_poll_grow_start": str(POLL_NS),
    "guest_halt_poll_allow_shrink": "N",
}


@contextmanager
def polling_idle(parameters: Path = PARAMETERS) -> Iterator[str]:
    """Idle vCPUs poll for the block; yields what was done, for the run's JSON: "polled
    (...)", or why not (not a haltpoll guest, or the parameters are read-only)."""
    try:
        saved = {name: (parameters / name).read_text().strip() for name in _WANTED}
    except OSError:
        yield "as the machine runs it (no haltpoll guest-polling parameters)"
        return
    try:
        _write(parameters, _WANTED)
    except OSError as exc:
        _write_quietly(parameters, saved)
        yield f"as the machine runs it (haltpoll parameters not writable: {exc.strerror})"
        return
    try:
        yield f"polled (haltpoll guest_halt_poll_ns={POLL_NS}, was {saved['guest_halt_poll_ns']})"
    finally:
        _write_quietly(parameters, saved)


def _write(parameters: Path, values: dict[str, str]) -> None:
    for name, value in values.items():
        (parameters / name).write_text(value)


def _write_quietly(parameters: Path, values: dict[str, str]) -> None:
    try:
        _write(parameters, values)
    except OSError as exc:  # said, not raised: the run's figures are still good
        log(f"could not put the haltpoll parameters back to {values}: {exc}")
