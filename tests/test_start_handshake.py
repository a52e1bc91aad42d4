"""The start handshake of the kernel's plain-process servers (the registry,
the gateway: :mod:`otp._start_handshake`): a server that does not
acknowledge its start in time is killed, and its starter gets
``StartError('timeout')`` without being killed through the link."""

from __future__ import annotations

import pytest
from helpers import down_of, recv_tagged

import otp
from otp.registry import MemoryBackend, _server


def always_alive(pid) -> bool:
    return True


class StallingBackend(MemoryBackend):
    """A backend whose first read (the registry reads every entry while it
    starts) tells the test which process it runs in, then never returns."""

    def __init__(self, test_pid: otp.Pid, **options) -> None:
        super().__init__(**options)
        self.test_pid = test_pid

    def list_all(self):
        otp.send(self.test_pid, ("stalled", otp.self()))
        otp.receive(None, lambda m: False)


def test_a_registry_that_does_not_start_in_time_is_killed_and_its_starter_is_not(node, monkeypatch):
    monkeypatch.setattr(_server, "_START_TIMEOUT", 1.0)  # the backend never lets the start finish
    otp.trap_exit(True)
    with pytest.raises(otp.StartError) as info:
        otp.Registry.start_link(backend=StallingBackend(otp.self(), is_alive=always_alive))
    assert info.value.reason == "timeout"
    stalled = recv_tagged("stalled")[1]
    assert down_of(otp.monitor(stalled)).reason in ("killed", "noproc")
    # A link's EXIT comes from the same notice as the DOWN, before it.
    with pytest.raises(otp.Timeout):
        otp.receive(0, lambda m: isinstance(m, otp.EXIT) and m.pid == stalled)
