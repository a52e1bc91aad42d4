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

__all__ = ["check_timeout", "wait_ms", "MAX_WAIT_MS"]

#: The longest single wait handed to ``poll``/``zmq_poll``/``RCVTIMEO``
#: (they take a C int of milliseconds); longer waits loop.
MAX_WAIT_MS = (1 << 31) - 1


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    """``timeout`` as None (forever) or a finite float >= 0; raises
    :class:`ValueError` or :class:`TypeError` for anything else."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds or None, not {timeout!r}")
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be >= 0 seconds (or None / math.inf for forever), not {timeout!r}")
    if value == math.inf:
        return None
    return value


def wait_ms(seconds: float | None) -> int:
    """Milliseconds for one OS-level wait of up to ``seconds`` (None: -1,
    forever); capped at :data:`MAX_WAIT_MS`, so callers that wait longer
    loop on their own deadline."""
    if seconds is None:
        return -1
    if seconds <= 0:
        return 0
    return min(MAX_WAIT_MS, math.ceil(seconds * 1000))
