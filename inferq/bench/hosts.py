"""Simulated worker hosts: each a network namespace (its own address, reached through a
cable to a switch) whose processes run in a cgroup with a CPU cap.

Redis and the producers stay outside, in the root namespace, uncapped: they talk to
the hosts over the switch as to machines on a LAN. A host's cap is lifted while its
processes start (TensorFlow's import is seconds of CPU) and set before anything is
measured.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from inferq.bench.cgroups import (
    CgroupError,
    CpuGroup,
    find_cpu_controller,
    remove_stale_groups,
    why_no_cgroups,
)
from inferq.bench.netns import Lan, why_no_namespaces
from inferq.core.processes import Managed

# Runs as `sh -c SCRIPT CPU_PROCS ACCT_PROCS ARGV...`: the shell moves itself into the
# group (the cpu controller's and, on v1 where it is mounted apart, cpuacct's), then
# execs the command, so every thread and child it makes is capped and counted from its
# first instruction.
_ENTER_GROUP = 'echo $$ > "$0" && echo $$ > "$1" && shift && exec "$@"'
# Runs as `python -c SCRIPT CPU ARGV...`: binds itself to one CPU, then execs the
# command, whose threads and children inherit the binding.
PIN_TO_CPU = (
    "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def why_no_hosts() -> str | None:
    """None when simulated hosts can be made here; otherwise why not."""
    reason = why_no_namespaces()
    if reason is not None:
        return reason
    reason = why_no_cgroups()
    return None if reason is None else f"cannot cap a host's CPU with a cgroup: {reason}"


class SimHosts(Managed):
    """``with SimHosts(4) as hosts:`` hosts ``h1`` … ``h4`` on one LAN;
    ``hosts.exec_argv(i, argv)`` runs a command on host i (1-based), inside its cgroup;
    ``hosts.cap(cores)`` caps every host; ``hosts.server_address`` is where the
    root namespace (Redis) is reached from the hosts."""

    def __init__(self, count: int, pin: bool = True) -> None:
        self.names = [f"h{i}" for i in range(1, count + 1)]
        self.lan = Lan(self.names)
        self.groups: dict[str, CpuGroup] = {}
        # Host i runs on one CPU, the machine's CPUs taken in turn. Unpinned, a host's
        # threads ran on every idle CPU at once, in bursts that spent the quota early:
        # alone on the machine a host paid for that parallelism (GIL hand-offs across
        # CPUs) and beside three others it did not, so a job's cost depended on the
        # host count (docs/scaling.md, "Why the curve was above linear").
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = [cpus[i % len(cpus)] for i in range(count)] if pin else None

    def start(self) -> SimHosts:
        controller = find_cpu_controller()
        remove_stale_groups(controller)
        self.lan.start()
        try:
            for name in self.names:
                self.groups[name] = CpuGroup(controller, name).make()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def server_address(self) -> str:
        return self.lan.root_address

    @property
    def cgroup_version(self) -> int:
        return next(iter(self.groups.values())).controller.version

    def group(self, index: int) -> CpuGroup:
        return self.groups[self.names[index - 1]]

    def exec_argv(self, index: int, argv: Sequence[str]) -> list[str]:
        name = self.names[index - 1]
        # The group first: `ip netns exec` mounts a /sys of its own, without cgroups.
        in_namespace = self.lan.exec_argv(name, argv)
        if self.cpus is not None:
            pin = [sys.executable, "-c", PIN_TO_CPU, str(self.cpus[index - 1])]
            in_namespace = [*pin, *in_namespace]
        cpu_procs, acct_procs = self.groups[name].procs_files
        return ["sh", "-c", _ENTER_GROUP, str(cpu_procs), str(acct_procs), *in_namespace]

    def cap(self, cores: float | None) -> None:
        for group in self.groups.values():
            group.cap(cores)

    def close(self) -> None:
        """Remove the cgroups and namespaces; the hosts' processes must be stopped first."""
        errors = []
        for group in self.groups.values():
            try:
                group.close()
            except (OSError, CgroupError) as exc:
                errors.append(exc)
        self.lan.close()
        if errors:
            raise CgroupError(f"cgroups left behind: {errors}")
