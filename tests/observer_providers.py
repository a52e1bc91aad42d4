"""Panel providers for the observer's tests, in a module that imports only
``otp``: a provider's process imports its module first, and a test module
(pytest, httpx) takes seconds to import on a loaded machine, longer than
the one-second timeout the hanging-provider tests give a read."""

from __future__ import annotations

import otp

#: The name a test registers to hear from a hanging provider.
HANG = "$panel_test_hang"


def hanging_provider():
    """Tells the test its pid, then never answers."""
    test = otp.whereis(HANG)
    if test is not None:
        otp.send(test, ("provider", otp.self()))
    otp.receive(match=lambda m: False)


def sometimes_hangs():
    """Hangs while the test has the name HANG registered, else answers."""
    if otp.whereis(HANG) is not None:
        hanging_provider()
    return {"tables": {"Things": [{"id": "a", "pid": otp.self()}]}}
