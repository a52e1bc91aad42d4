"""Fixtures: a node per test, and a check that nothing outlives it.

Every test that uses ``node`` ends by asserting that no OS process started
during the test is left: not the node's zygote, not any of its processes,
no descendant of the test process at all.
"""

from __future__ import annotations

import os

import psutil
import pytest

import otp


def _descendants() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


@pytest.fixture
def node():
    before = {p.pid for p in _descendants()}
    with otp.Node() as n:
        node_dir = n.info.dir
        yield n
    leaked = [p for p in _descendants() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    assert not leaked, f"processes outlived the node: {leaked}"
    zombies = [p for p in _descendants() if p.pid not in before]
    assert not zombies, f"unreaped processes: {zombies}"
    assert not os.path.exists(node_dir), "node directory left behind"


@pytest.fixture(params=["forkserver", "fork"])
def start_method(request, monkeypatch):
    """Both start methods, whatever ``OTP_START_METHOD`` says: a module
    whose behaviour must hold under each overrides ``node`` as
    ``def node(start_method, node)``."""
    monkeypatch.setenv("OTP_START_METHOD", request.param)
    return request.param


@pytest.fixture
def app(node):
    """MABEAM started under the test (which traps exits, so that the
    application's shutdown at the end does not take it down)."""
    import mabeam

    otp.trap_exit(True)
    sup = mabeam.start()
    yield sup
    mabeam.stop(sup)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
