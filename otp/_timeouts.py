"""Timeouts: one meaning everywhere, checked before anything is sent.

Every blocking call of ``otp`` and ``mabeam`` takes ``timeout`` in seconds:

* ``None`` or ``math.inf`` waits forever (OTP's ``infinity``);
* any finite real ``>= 0`` waits that long, however large (a wait of 30
  days is a wait of 30 days: the waits below are done in slices that fit
  the operating system's ``int`` milliseconds);
* ``nan``, a negative number, a bool or anything that is not a real number
  raises before the call has any effect (:class:`ValueError` for a bad
  number, :class:`TypeError` for a non-number).
"""

from __future__ import annotations

import math
import numbers
import reprlib

__all__ = ["check_timeout", "wait_ms", "MAX_WAIT_MS"]

#: The longest single wait handed to ``poll``/``zmq_poll``/``RCVTIMEO``
#: (they take a C int of milliseconds); longer waits loop.
MAX_WAIT_MS = (1 << 31) - 1


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    """``timeout`` as None (forever) or a finite float >= 0; raises
    :class:`ValueError` or :class:`TypeError` for anything else.

    An int too large for a float (``10**400`` seconds) is finite, but no
    wait can tell it from forever: it becomes None."""
    if (type(timeout) is float or type(timeout) is int) and 0 <= timeout < math.inf:  # the common case, cheaply
        try:
            return float(timeout)
        except OverflowError:
            return None
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds or None, not {reprlib.repr(timeout)}")
    try:
        value = float(timeout)
    except OverflowError:
        value = -math.inf if timeout < 0 else math.inf
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be >= 0 seconds (or None / math.inf for forever), not {reprlib.repr(timeout)}")
    if value == math.inf:
        return None
    return value


def wait_ms(seconds: float | None) -> int:
    """Milliseconds for one OS-level wait of up to ``seconds`` (None: -1,
    forever); capped at :data:`MAX_WAIT_MS` (also for ``math.inf``), so
    callers that wait longer loop on their own deadline."""
    if seconds is None:
        return -1
    if seconds <= 0:
        return 0
    if seconds >= MAX_WAIT_MS / 1000:
        return MAX_WAIT_MS
    return math.ceil(seconds * 1000)
