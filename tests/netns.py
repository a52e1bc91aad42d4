"""Network partitions for tests: Linux network namespaces on bridges.

``with partitionable(n) as net:`` makes ``n`` network namespaces, each
with one address (``net.address(i)``) on a private /24, wired by a veth
pair to a bridge in a namespace of its own (the *switch*), so nothing is
added to the machine's own network.  The test process reaches every
namespace through one more veth pair, its own end on the first bridge.

``net.split([[0, 1, 3], [2, 4]])`` moves each group's ports onto a bridge
of its own: namespaces in different groups can no longer exchange a
packet (the test process stays with the first group); ``net.heal()``
puts every port back on the first bridge.  ``net.command(i, argv)`` is the
argv that runs a program inside namespace ``i`` (``ip netns exec``): start
it with subprocess, stop it by pid.

At exit every namespace is deleted (which deletes its veth ends) and the
test process's own veth end with it; the check that none is left is part
of the exit.  Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and ``ip``;
tests that use it are marked ``@requires_netns`` and skip, saying why,
where it is not available.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence

import pytest

IP = shutil.which("ip")


def _netns_works() -> str | None:
    """None if namespaces can be made here, else why not."""
    if IP is None:
        return "the ip command is not installed (Debian: iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = "otpprobe" + secrets.token_hex(3)
    made = subprocess.run([IP, "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run([IP, "netns", "del", name], capture_output=True)
    return None


_WHY_NOT = _netns_works()
requires_netns = pytest.mark.skipif(_WHY_NOT is not None, reason=f"no network namespaces: {_WHY_NOT}")


def _ip(*args: str) -> None:
    assert IP is not None
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Network:
    """``n`` namespaces on a switch (see the module doc)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tag = secrets.token_hex(2)
        # 10.<a>.<b>.0/24 out of 10.200.0.0/13: unlikely to meet a real route.
        octet = int(self.tag, 16)
        self.subnet = f"10.{200 + (octet >> 13) % 8}.{(octet >> 5) % 256}"
        self.switch = f"otpsw{self.tag}"
        self.names = [f"otp{self.tag}n{i}" for i in range(n)]
        self.bridges: set[str] = set()
        self._made: list[str] = []
        self._host_port = f"otp{self.tag}h"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    @property
    def host_address(self) -> str:
        """The test process's own address on the first bridge."""
        return f"{self.subnet}.254"

    def command(self, i: int, argv: Sequence[str]) -> list[str]:
        assert IP is not None
        return [IP, "netns", "exec", self.names[i], *argv]

    def start(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        self._bridge(0)
        for i, ns in enumerate(self.names):
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            inside, port = f"otp{self.tag}i{i}", f"otp{self.tag}p{i}"
            _ip("link", "add", inside, "type", "veth", "peer", "name", port)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", port, "netns", self.switch)
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", self.switch, "link", "set", port, "master", "br0")
            _ip("-n", self.switch, "link", "set", port, "up")
        # The test process's own way in, on the first bridge.
        uplink = f"otp{self.tag}u"
        _ip("link", "add", self._host_port, "type", "veth", "peer", "name", uplink)
        _ip("link", "set", uplink, "netns", self.switch)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self._host_port)
        _ip("link", "set", self._host_port, "up")
        _ip("-n", self.switch, "link", "set", uplink, "master", "br0")
        _ip("-n", self.switch, "link", "set", uplink, "up")

    def _bridge(self, k: int) -> str:
        name = f"br{k}"
        if name not in self.bridges:
            _ip("-n", self.switch, "link", "add", name, "type", "bridge")
            _ip("-n", self.switch, "link", "set", name, "up")
            self.bridges.add(name)
        return name

    def split(self, groups: Sequence[Sequence[int]]) -> None:
        """Cut the network into ``groups`` of namespace indices (every
        namespace in exactly one group); the first group keeps the test
        process."""
        flat = sorted(i for g in groups for i in g)
        if flat != list(range(self.n)):
            raise ValueError(f"groups must cover each of {self.n} namespaces once: {groups}")
        for k, group in enumerate(groups):
            bridge = self._bridge(k)
            for i in group:
                _ip("-n", self.switch, "link", "set", f"otp{self.tag}p{i}", "master", bridge)

    def heal(self) -> None:
        self.split([list(range(self.n))])

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run([IP or "ip", "netns", "del", ns], capture_output=True)
        subprocess.run([IP or "ip", "link", "del", self._host_port], capture_output=True)
        self._made.clear()

    def leftovers(self) -> list[str]:
        listed = subprocess.run([IP or "ip", "netns", "list"], capture_output=True, text=True).stdout
        mine = [line.split()[0] for line in listed.splitlines() if self.tag in line.split()[0]]
        links = subprocess.run([IP or "ip", "-o", "link"], capture_output=True, text=True).stdout
        return mine + [self._host_port] * (f" {self._host_port}@" in links or f" {self._host_port}:" in links)


@contextlib.contextmanager
def partitionable(n: int) -> Iterator[Network]:
    if _WHY_NOT is not None:
        pytest.skip(f"no network namespaces: {_WHY_NOT}")
    net = Network(n)
    try:
        net.start()
        yield net
    finally:
        net.close()
        left = net.leftovers()
        assert not left, f"namespaces or links left behind: {left}"


__all__ = ["Network", "partitionable", "requires_netns"]
