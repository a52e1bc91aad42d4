"""gen_statem (otp.GenStatem) timeouts: event, state and generic
timeouts, a bad timeout action, and hibernation, under both start methods.

Each test's docstring names the gen_statem behaviour it restates (OTP's
gen_statem reference manual)."""

from __future__ import annotations

import pytest
from helpers import exit_of
from statem_recorder import Plain, seen

import otp
import otp.sys as otp_sys
from otp import HIBERNATE
from otp._gen_statem import (
    CancelTimeout,
    EventTimeout,
    EventType,
    GenericTimeout,
    KeepStateAndData,
    NamedTimeout,
    NextEvent,
    NextState,
    StateTimeout,
    UpdateTimeout,
)

CAST, INFO, INTERNAL = EventType.CAST, EventType.INFO, EventType.INTERNAL


@pytest.fixture
def node(start_method, node):
    """The conftest's node, under each start method."""
    assert node.start_method == start_method
    return node


def pending(m):
    return {t.kind: t.content for t in otp_sys.get_status(m).behaviour_status["timeouts"]}


def test_event_timeout_fires_when_idle_and_is_cancelled_by_any_event(node):
    """gen_statem event timeout ({timeout, T, Content}): a timeout event
    after T unless an event comes first; any event cancels it."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([EventTimeout(30, "idle")])))
    assert seen()[:2] == ("a", CAST)
    assert pending(m) == {EventType.TIMEOUT: "idle"}
    otp.send(m, "any")
    assert seen() == ("a", INFO, "any")
    assert pending(m) == {}
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([EventTimeout(0.05, "idle")])))
    assert seen()[:2] == ("a", CAST)
    assert seen() == ("a", EventType.TIMEOUT, "idle")
    otp.stop(m)


def test_zero_event_timeout_is_cancelled_by_queued_events(node):
    """gen_statem event timeout 0: delivered only if no event is queued (an
    inserted event cancels it)."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([NextEvent(INTERNAL, 1), EventTimeout(0, "never")])))
    assert seen()[:2] == ("a", CAST)
    assert seen() == ("a", INTERNAL, 1)
    otp.send(m, "marker")
    assert seen() == ("a", INFO, "marker")
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([EventTimeout(0, "now")])))
    assert seen()[:2] == ("a", CAST)
    assert seen() == ("a", EventType.TIMEOUT, "now")
    otp.stop(m)


def test_state_timeout_is_cancelled_by_a_state_change_only(node):
    """gen_statem state timeout: survives events that keep the state,
    cancelled by a state change; one set in the transition belongs to the
    new state; a new one replaces the running one."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([StateTimeout(30, "in a")])))
    assert seen()[:2] == ("a", CAST)
    otp.send(m, "x")
    assert seen() == ("a", INFO, "x")
    assert pending(m) == {EventType.STATE_TIMEOUT: "in a"}
    otp.cast(m, ("do", lambda t, d: NextState("b", d)))
    assert seen()[:2] == ("a", CAST)
    assert pending(m) == {}
    otp.cast(m, ("do", lambda t, d: NextState("c", d, [StateTimeout(30, "for c")])))
    assert seen()[:2] == ("b", CAST)
    assert pending(m) == {EventType.STATE_TIMEOUT: "for c"}
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([StateTimeout(0.05, "replaced")])))
    assert seen()[:2] == ("c", CAST)
    assert seen() == ("c", EventType.STATE_TIMEOUT, "replaced")
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([StateTimeout(30, "x"), StateTimeout(None, "x")])))
    assert seen()[:2] == ("c", CAST)
    assert pending(m) == {}  # infinity cancels
    otp.stop(m)


def test_generic_timeouts_by_name(node):
    """gen_statem generic timeouts {{timeout, Name}, T, Content}: one per
    name, a new one replaces the old, infinity or cancel stops it, update
    changes its content (or fires at once if none runs); a state change
    does not cancel them."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(
        m,
        (
            "do",
            lambda t, d: NextState(
                "b",
                d,
                [
                    GenericTimeout("x", 30, "old"),
                    GenericTimeout("y", 30, "y"),
                    GenericTimeout("z", 30, "z"),
                    GenericTimeout("x", 30, "new"),
                    UpdateTimeout(NamedTimeout("y"), "y2"),
                    CancelTimeout(NamedTimeout("z")),
                ],
            ),
        ),
    )
    assert seen()[:2] == ("a", CAST)
    assert pending(m) == {NamedTimeout("x"): "new", NamedTimeout("y"): "y2"}
    otp.cast(m, ("do", lambda t, d: NextState("c", d, [GenericTimeout("x", math_inf(), None)])))
    assert seen()[:2] == ("b", CAST)
    assert pending(m) == {NamedTimeout("y"): "y2"}
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([GenericTimeout("y", 0.05, "fired")])))
    assert seen()[:2] == ("c", CAST)
    assert seen() == ("c", NamedTimeout("y"), "fired")
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([UpdateTimeout(NamedTimeout("w"), "at once")])))
    assert seen()[:2] == ("c", CAST)
    assert seen() == ("c", NamedTimeout("w"), "at once")
    otp.stop(m)


def math_inf() -> float:
    return float("inf")


def test_bad_timeout_is_a_bad_action(node):
    """gen_statem: an action of the wrong form stops the machine with
    {bad_action_from_state_function, Action}."""
    otp.trap_exit(True)
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([StateTimeout(-1, "x")])))
    assert seen()[:2] == ("a", CAST)
    reason = exit_of(m).reason
    assert reason == ("bad_action_from_state_function", StateTimeout(-1, "x"))


def test_hibernate_action(node):
    """gen_statem hibernate action: the machine waits in hibernation (here:
    after a garbage collection) and carries on."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([HIBERNATE])))
    assert seen()[:2] == ("a", CAST)
    otp.send(m, "awake")
    assert seen() == ("a", INFO, "awake")
    otp.stop(m)
