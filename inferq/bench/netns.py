"""Hosts made of Linux network namespaces, for benchmarks and tests that need a real
network between processes: a switch (a bridge in its own namespace), one namespace per host, each
plugged into the switch with a veth "cable", and the test process (the root
namespace) on the same subnet through a cable of its own.

Cutting a host's cable at the switch is a network partition the host does not see:
its interface stays up, its packets go nowhere, its open connections hang.

Needs root and iproute2 (``ip``). Names carry the making process's pid, so a run
never collides with another one, and namespaces left behind by a run that died are
removed by the next one. Used by `inferq bench scale` (inferq.bench.hosts adds a CPU
cap per host) and by tests/faults/test_multihost.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from inferq.core.processes import Managed

PREFIX = "iqmh"
SUBNET_BASE = "10.77"
SWITCH_ADDRESS_OCTET = 254  # the root namespace's own address on the subnet


class NetnsError(RuntimeError):
    """An ``ip`` command failed: no permission, no iproute2, a kernel without netns."""


def ip(*args: str) -> str:
    """Run ``ip ARGS``; its stdout, or NetnsError with its stderr."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def why_no_namespaces() -> str | None:
    """None when this process can make network namespaces; otherwise why not. Tried for
    real: root is not enough in an unprivileged container."""
    if shutil.which("ip") is None:
        return "no `ip` command (install iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    return None


def remove_stale_namespaces() -> None:
    """Delete namespaces of earlier runs whose test process is gone (a crashed run)."""
    for line in ip("netns", "list").splitlines():
        match = re.match(rf"({PREFIX}(\d+)-\S+)", line)
        if match and not os.path.exists(f"/proc/{match.group(2)}"):
            ip("netns", "del", match.group(1))


def free_subnet() -> str:
    """``10.77.N`` with N not on any interface here, so that concurrent runs coexist."""
    used = ip("-4", "-o", "addr", "show")
    start = os.getpid() % 250
    for step in range(250):
        prefix = f"{SUBNET_BASE}.{(start + step) % 250 + 1}"
        if f" {prefix}." not in used:
            return prefix
    raise NetnsError(f"no free {SUBNET_BASE}.N.0/24 subnet")


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    switch_port: str  # the cable's end on the switch


class Lan(Managed):
    """``with Lan(["redis", "w1"]) as lan:`` hosts on one /24; ``lan.exec_argv("w1", argv)``
    runs a command on a host; ``lan.cut("w1")`` / ``lan.mend("w1")`` pull and replug its
    cable."""

    def __init__(self, host_names: Sequence[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.switch = f"{self.tag}-sw"
        self.root_port = f"{self.tag}-rt"
        self.subnet = ""
        self.host_names = list(host_names)
        self.hosts: dict[str, Host] = {}
        self.root_address = ""

    def start(self) -> Lan:
        remove_stale_namespaces()
        self.subnet = free_subnet()
        self.root_address = f"{self.subnet}.{SWITCH_ADDRESS_OCTET}"
        try:
            self._make_switch()
            for index, name in enumerate(self.host_names, start=1):
                self.hosts[name] = self._make_host(name, f"{self.subnet}.{index}")
        except BaseException:
            self.close()
            raise
        return self

    def _make_switch(self) -> None:
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        # The root namespace's cable: the test process talks to the hosts through it.
        ip(
            "link",
            "add",
            self.root_port,
            "type",
            "veth",
            "peer",
            "name",
            "root",
            "netns",
            self.switch,
        )
        ip("-n", self.switch, "link", "set", "root", "master", "br0", "up")
        ip("addr", "add", f"{self.root_address}/24", "dev", self.root_port)
        ip("link", "set", self.root_port, "up")

    def _make_host(self, name: str, address: str) -> Host:
        namespace = f"{self.tag}-{name}"
        ip("netns", "add", namespace)
        # Loopback starts down in a new namespace; local connections need it.
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", name)
        ip("-n", namespace, "link", "set", name, "netns", self.switch)
        ip("-n", self.switch, "link", "set", name, "master", "br0", "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        return Host(name, namespace, address, name)

    def address(self, host: str) -> str:
        return self.hosts[host].address

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        # `ip netns exec` execs the command itself: the pid Popen sees is the command's.
        return ["ip", "netns", "exec", self.hosts[host].namespace, *argv]

    def pin_neighbour(self, host: str) -> None:
        """Fix the host's MAC address in the root namespace's neighbour table: with its
        cable cut, packets to it then vanish at the switch (as behind a NAT that dropped
        the connection) instead of failing fast on an unanswered ARP request."""
        link = ip("-n", self.hosts[host].namespace, "-o", "link", "show", "eth0")
        mac = link.split("link/ether", 1)[1].split()[0]
        ip("neigh", "replace", self.address(host), "lladdr", mac, "dev", self.root_port)
        ip("neigh", "change", self.address(host), "dev", self.root_port, "nud", "permanent")

    def cut(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[host].switch_port, "down")

    def mend(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[host].switch_port, "up")

    def close(self) -> None:
        """Delete every namespace of this run (their cables go with them). Processes
        still inside keep a namespace alive, unnamed: stop them first."""
        # The root namespace's cable first, by name: a switch namespace kept alive a
        # moment by a dying process would keep it, and the next Lan of this test
        # process (the same name) could not be made.
        if re.search(rf"\b{re.escape(self.root_port)}@", ip("-o", "link", "show")):
            ip("link", "del", self.root_port)
        existing = ip("netns", "list")
        for namespace in [f"{self.tag}-{n}" for n in self.host_names] + [self.switch]:
            if re.search(rf"^{re.escape(namespace)}\b", existing, re.MULTILINE):
                ip("netns", "del", namespace)
