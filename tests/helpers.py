"""Assertions that wait on messages, never on the clock."""

from __future__ import annotations

import otp

TIMEOUT = 10.0


def recv(match=None, timeout: float = TIMEOUT):
    return otp.receive(timeout, match)


def recv_tagged(tag: str, timeout: float = TIMEOUT):
    return otp.receive(timeout, lambda m: isinstance(m, tuple) and len(m) > 0 and m[0] == tag)


def down_of(ref, timeout: float = TIMEOUT) -> otp.DOWN:
    return otp.receive(timeout, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


def exit_of(pid, timeout: float = TIMEOUT) -> otp.EXIT:
    return otp.receive(timeout, lambda m: isinstance(m, otp.EXIT) and m.pid == pid)


def nothing_matching(match, timeout: float = 0.2) -> bool:
    """True if no message matching arrives within ``timeout`` (used only to
    show that something does NOT happen, after a later event proved the
    earlier one had its chance)."""
    try:
        otp.receive(timeout, match)
    except otp.Timeout:
        return True
    return False


def wait_dead(pid: otp.Pid, timeout: float = TIMEOUT) -> object:
    ref = otp.monitor(pid)
    return down_of(ref, timeout).reason
