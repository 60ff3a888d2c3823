"""The pure parts of `inferq bench scale`: finding the cgroup cpu controller, the
figures of a round, efficiency, medians and the command line's lists."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inferq.bench.cgroups import CgroupError, find_cpu_controller
from inferq.bench.fleet import FleetSpec, fleet_queues, host_queues
from inferq.bench.hosts import PIN_TO_CPU, SimHosts
from inferq.bench.scale import parse_hosts, parse_workloads, window_or_round
from inferq.bench.scale_report import efficiency, failures, median, report, spread, table
from inferq.bench.scale_sampler import Sample, stored_answers
from inferq.bench.scale_window import Round, Window, depth_stats, window

V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_v1_cpu_controller_is_found_by_its_mount_option_not_by_a_cpuacct_mount() -> None:
    found = find_cpu_controller(V1_MOUNTS)
    assert (found.version, found.root) == (1, Path("/sys/fs/cgroup/cpu"))
    # cpuacct mounted apart: its group is made beside the cpu one, for cpuacct.usage.
    assert found.acct_root == Path("/sys/fs/cgroup/cpuacct")
    joint = find_cpu_controller("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n")
    assert joint.root == joint.acct_root == Path("/sys/fs/cgroup/cpu,cpuacct")


def test_v2_is_used_only_where_its_controllers_include_cpu(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset io memory pids\n")
    mounts = f"cgroup2 {tmp_path} cgroup2 rw,relatime 0 0\n"
    with pytest.raises(CgroupError, match="no cgroup cpu controller"):
        find_cpu_controller(mounts)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    found = find_cpu_controller(mounts)
    assert (found.version, found.root) == (2, tmp_path)


def test_each_host_consumes_the_queues_of_every_count_it_belongs_to() -> None:
    spec = FleetSpec("serving", ("regression",), {})
    queues = fleet_queues(spec, (1, 2, 4), "t")
    assert host_queues(queues, 1) == [queues[n]["regression"] for n in (1, 2, 4)]
    assert host_queues(queues, 2) == [queues[n]["regression"] for n in (2, 4)]
    assert host_queues(queues, 3) == host_queues(queues, 4) == [queues[4]["regression"]]


def _sample(t: float, depth: int, stored: int, usage: list[float], throttled: int) -> Sample:
    n = len(usage)
    return Sample(
        t=t,
        depth=depth,
        stored=stored,
        usage_s=tuple(usage),
        periods=tuple(int(t * 10) for _ in range(n)),  # one 100 ms period each 0.1 s
        throttled=tuple(throttled for _ in range(n)),
        held_s=tuple(0.0 for _ in range(n)),
        redis_s=t * 0.1,
        machine_s=t * 1.5,
    )


def _reports(cpu_s: tuple[float, ...]) -> list[dict[str, Any]]:
    return [
        {"started_at": 0.0, "sent_at": 0.0, "done_at": 10.0, "cpu_s": c, "jobs": 500, "failed": 0}
        for c in cpu_s
    ]


def _round(rate: float, host_cores: list[float], producers_s: tuple[float, ...] = (1.0,)) -> Round:
    """A 10 s round of ``rate`` units/s, each host at ``host_cores``, throttled in every
    period past the first second."""
    samples = [
        _sample(t, 100, int(rate * t), [c * t for c in host_cores], max(0, int(t * 10) - 10))
        for t in (0.0, 1.0, 9.0, 10.0)
    ]
    return Round.of(Window(1.0, 9.0, int(rate * 8)), samples, _reports(producers_s), 0.25, 1.5)


def test_a_round_turns_samples_into_cores_loads_and_the_busiest_party() -> None:
    hosts_bound = _round(100.0, [0.25, 0.24])
    assert hosts_bound.rate == 100.0
    assert hosts_bound.hosts_cores == [0.25, 0.24]
    assert hosts_bound.hosts_load == [1.0, 0.96]
    assert hosts_bound.throttled_periods == [1.0, 1.0]
    assert hosts_bound.redis_cores == 0.1
    assert hosts_bound.machine_cores == 1.5
    assert hosts_bound.host_cpu_us_per_unit == pytest.approx(4900.0)
    assert hosts_bound.saturated == "hosts" and hosts_bound.hosts_saturated
    producer_bound = _round(100.0, [0.1, 0.1], (9.5, 1.0))
    assert producer_bound.producer_max_cores == 0.95
    assert producer_bound.saturated == "producers" and not producer_bound.hosts_saturated


def test_the_window_leaves_out_the_first_and_last_tenth_and_counts_bursts_once() -> None:
    # 10 bursts of 10 answers, one a second: the window runs from the first burst to the
    # ninth, and holds the 80 answers of bursts 2..9 in 8 s.
    answers = [(float(t), 10) for t in range(1, 11)]
    w = window(answers)
    assert (w.start, w.end, w.units) == (1.0, 9.0, 80)
    assert w.rate == 10.0
    with pytest.raises(ValueError, match="too few bursts"):
        window([(1.0, 50), (1.0, 50)])


def test_answers_are_counted_where_the_hosts_store_them() -> None:
    samples = [_sample(t, 0, stored, [0.0], 0) for t, stored in [(0.0, 5), (1.0, 5), (2.0, 9)]]
    samples += [_sample(3.0, 0, 9, [0.0], 0), _sample(4.0, 0, 12, [0.0], 0)]
    assert stored_answers(samples, go=0.5) == [(2.0, 4), (4.0, 3)]


def test_the_queue_the_hosts_saw_is_summarised_inside_the_window() -> None:
    samples = [_sample(float(t), d, 0, [0.0], 0) for t, d in enumerate([50, 40, 0, 10, 0, 99])]
    assert depth_stats(samples, 1.0, 4.0) == {
        "min": 0,
        "median": 5.0,
        "max": 40,
        "empty_share": 0.5,
        "samples": 4,
    }


def test_efficiency_is_the_rate_over_the_count_times_one_hosts_rate() -> None:
    assert efficiency({1: 100.0, 2: 190.0, 4: 340.0}) == {"1": 1.0, "2": 0.95, "4": 0.85}
    rounds = [_round(r, [0.25]) for r in (90.0, 120.0, 100.0)]
    assert median(rounds).rate == 100.0
    assert spread(rounds) == 0.2


def test_a_curve_above_linear_or_on_idle_hosts_is_a_failed_measurement() -> None:
    good = {1: [_round(100.0, [0.25])], 2: [_round(190.0, [0.25, 0.25])]}
    assert failures(good) == []
    above = {1: [_round(100.0, [0.25])], 2: [_round(210.0, [0.25, 0.25])]}
    assert failures(above) == ["efficiency 1.05 at 2 hosts: above 1.0"]
    idle = {1: [_round(100.0, [0.25])], 2: [_round(150.0, [0.25, 0.2])]}
    assert failures(idle) == ["2 hosts: a host at 0.8 of its cap (under 0.9)"]
    unsteady = {1: [_round(r, [0.25]) for r in (80.0, 100.0, 100.0)]}
    assert failures(unsteady) == ["1 hosts: rounds spread ±20% (over ±10%)"]
    result = report({"stream": above, "celery_noop": good}, {"host_cpu": 0.25}, {})
    assert result["status"] == {"stream": "failed", "celery_noop": "ok"}
    assert result["failures"] == {"stream": ["efficiency 1.05 at 2 hosts: above 1.0"]}
    assert "**stream: FAILED measurement**" in table(result)


def test_host_counts_and_workloads_are_checked() -> None:
    assert parse_hosts("4,1,2,2") == (1, 2, 4)
    assert parse_workloads("stream, bulk") == ("stream", "bulk")
    for bad in ("0,1", "", "a"):
        with pytest.raises(ValueError):
            parse_hosts(bad)
    with pytest.raises(ValueError, match="workloads are"):
        parse_workloads("stream,gpu")


def test_each_host_is_bound_to_one_cpu_taken_in_turn() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    assert SimHosts(3).cpus == [cpus[i % len(cpus)] for i in range(3)]
    assert SimHosts(3, pin=False).cpus is None
    # The shim binds itself, then execs the command, which inherits the binding.
    shown = "import os; print(sorted(os.sched_getaffinity(0)))"
    argv = [sys.executable, "-c", PIN_TO_CPU, str(cpus[-1]), sys.executable, "-c", shown]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"[{cpus[-1]}]"


def test_a_round_too_short_for_a_window_is_measured_whole_and_fails() -> None:
    whole = window_or_round([(2.0, 8), (2.0, 4)])
    assert (whole.start, whole.end, whole.units, whole.whole) == (2.0, 2.0, 12, True)
    short = _round(100.0, [0.25])
    short = dataclasses.replace(short, windowed=False)
    assert failures({1: [short]}) == [
        "1 hosts: answers in too few bursts to measure a window (rounds too short)"
    ]
