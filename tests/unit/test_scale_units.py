"""The pure parts of `inferq bench scale`: finding the cgroup cpu controller, the
figures of a round, efficiency, medians and the command line's lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferq.bench.cgroups import CgroupError, find_cpu_controller
from inferq.bench.fleet import FleetSpec, fleet_queues, host_queues
from inferq.bench.scale import parse_hosts, parse_workloads
from inferq.bench.scale_report import Round, efficiency, median

V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_v1_cpu_controller_is_found_by_its_mount_option_not_by_a_cpuacct_mount() -> None:
    found = find_cpu_controller(V1_MOUNTS)
    assert (found.version, found.root) == (1, Path("/sys/fs/cgroup/cpu"))


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


def _round(rate: float, hosts_s: list[float], producers_s: list[float]) -> Round:
    before = {"hosts": [0.0] * len(hosts_s), "throttled": [0.0] * len(hosts_s)}
    after = {"hosts": hosts_s, "throttled": [1.0] * len(hosts_s)}
    return Round.of(
        rate=rate,
        elapsed_s=10.0,
        before={**before, "redis": 5.0, "machine": 100.0},
        after={**after, "redis": 7.0, "machine": 110.0},
        producer_cpu_s=producers_s,
        failed=0,
        send_rate=None,
        cap=0.25,
    )


def test_a_round_turns_cpu_seconds_into_cores_and_names_the_busiest_party() -> None:
    hosts_bound = _round(100.0, [2.5, 2.4], [1.0, 1.0])
    assert hosts_bound.hosts_cores == [0.25, 0.24]
    assert hosts_bound.redis_cores == 0.2
    assert hosts_bound.load["hosts"] == pytest.approx(0.98)
    assert hosts_bound.saturated == "hosts"
    producer_bound = _round(100.0, [1.0, 1.0], [9.5, 1.0])
    assert producer_bound.producer_max_cores == 0.95
    assert producer_bound.saturated == "producers"


def test_efficiency_is_the_rate_over_the_count_times_one_hosts_rate() -> None:
    assert efficiency({1: 100.0, 2: 190.0, 4: 340.0}) == {"1": 1.0, "2": 0.95, "4": 0.85}
    rounds = [_round(r, [1.0], [1.0]) for r in (90.0, 120.0, 100.0)]
    assert median(rounds).rate == 100.0


def test_host_counts_and_workloads_are_checked() -> None:
    assert parse_hosts("4,1,2,2") == (1, 2, 4)
    assert parse_workloads("stream, bulk") == ("stream", "bulk")
    for bad in ("0,1", "", "a"):
        with pytest.raises(ValueError):
            parse_hosts(bad)
    with pytest.raises(ValueError, match="workloads are"):
        parse_workloads("stream,gpu")
