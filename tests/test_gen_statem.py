"""gen_statem (otp.GenStatem): both callback modes, state enter calls,
postponing, inserted events, replies, stop, terminate, naming, supervision
and sys, under both start methods (the timeouts and hibernation are in
tests/test_gen_statem_timeouts.py, the scripted Recorder machine in
tests/statem_recorder.py).

Each test's docstring names the gen_statem behaviour it restates (OTP's
gen_statem reference manual and the gen_statem chapter of the OTP Design
Principles user's guide, whose "code lock" is the running example)."""

from __future__ import annotations

import os

import pytest
from helpers import down_of, exit_of, nothing_matching, recv, wait_dead
from statem_recorder import Plain, Recorder, seen

import otp
import otp.sys as otp_sys
from otp import supervisor as sup_api
from otp._gen_statem import (
    Call,
    EventType,
    GenStatem,
    KeepState,
    KeepStateAndData,
    NextEvent,
    NextState,
    Postpone,
    RepeatState,
    RepeatStateAndData,
    ReplyTo,
    StateTimeout,
    StopAndReply,
)

CAST, INFO, INTERNAL, ENTER = EventType.CAST, EventType.INFO, EventType.INTERNAL, EventType.ENTER


@pytest.fixture
def node(start_method, node):
    """The conftest's node (which checks that no process outlives it),
    under each start method."""
    assert node.start_method == start_method
    return node


# ----------------------------------------------------------- the code lock

#: How long the door stays open in the tests (the guide's 10 s).
OPEN_FOR = 0.3


class CodeLock(GenStatem):
    """The user's guide code lock, ``state_functions`` with state enter
    calls; buttons pressed while the door is open are postponed."""

    callback_mode = "state_functions"
    state_enter = True

    def init(self, args):
        code, listener = args
        return "locked", {"code": code, "length": len(code), "buttons": [], "listener": listener}

    def locked(self, event_type, content, data):
        if event_type == ENTER:
            otp.send(data["listener"], ("door", "locked"))
            return KeepState({**data, "buttons": []})
        if event_type == EventType.STATE_TIMEOUT and content == "button":
            return KeepState({**data, "buttons": []})
        if event_type == CAST and content[0] == "button":
            buttons = data["buttons"][-(data["length"] - 1) :] if data["length"] > 1 else []
            buttons = [*buttons, content[1]]
            if buttons == data["code"]:
                return NextState("open", data)
            return NextState("locked", {**data, "buttons": buttons}, [StateTimeout(30, "button")])
        return self.handle_common(event_type, content, data)

    def open(self, event_type, content, data):
        if event_type == ENTER:
            otp.send(data["listener"], ("door", "open"))
            return KeepStateAndData([StateTimeout(OPEN_FOR, "lock")])
        if event_type == EventType.STATE_TIMEOUT and content == "lock":
            return NextState("locked", data)
        if event_type == CAST and content[0] == "button":
            return KeepStateAndData([Postpone()])
        return self.handle_common(event_type, content, data)

    def handle_common(self, event_type, content, data):
        if isinstance(event_type, Call) and content == "code_length":
            return KeepStateAndData([ReplyTo(event_type.from_, data["length"])])
        if isinstance(event_type, Call) and content == "buttons":
            return KeepStateAndData([ReplyTo(event_type.from_, data["buttons"])])
        return KeepStateAndData()


class CodeLockOneFunction(GenStatem):
    """The same lock in ``handle_event_function`` mode (the guide's
    "one state callback" variant)."""

    callback_mode = "handle_event_function"
    state_enter = True

    def init(self, args):
        code, listener = args
        return "locked", {"code": code, "length": len(code), "buttons": [], "listener": listener}

    def handle_event(self, event_type, content, state, data):
        match (event_type, content, state):
            case (EventType.ENTER, _, "locked"):
                otp.send(data["listener"], ("door", "locked"))
                return KeepState({**data, "buttons": []})
            case (EventType.ENTER, _, "open"):
                otp.send(data["listener"], ("door", "open"))
                return KeepStateAndData([StateTimeout(OPEN_FOR, "lock")])
            case (EventType.STATE_TIMEOUT, "button", "locked"):
                return KeepState({**data, "buttons": []})
            case (EventType.STATE_TIMEOUT, "lock", "open"):
                return NextState("locked", data)
            case (EventType.CAST, ("button", button), "locked"):
                buttons = [*data["buttons"], button][-data["length"] :]
                if buttons == data["code"]:
                    return NextState("open", data)
                return KeepState({**data, "buttons": buttons}, [StateTimeout(30, "button")])
            case (EventType.CAST, ("button", _), "open"):
                return KeepStateAndData([Postpone()])
            case (Call(from_), "code_length", _):
                return KeepStateAndData([ReplyTo(from_, data["length"])])
            case (Call(from_), "buttons", _):
                return KeepStateAndData([ReplyTo(from_, data["buttons"])])
        return KeepStateAndData()


def door(state: str):
    assert recv(lambda m: isinstance(m, tuple) and m[0] == "door") == ("door", state)


def press(lock, *buttons):
    for b in buttons:
        otp.cast(lock, ("button", b))


@pytest.mark.parametrize("machine", [CodeLock, CodeLockOneFunction])
def test_code_lock_opens_on_the_code_and_locks_on_its_state_timeout(node, machine):
    """User's guide, code lock: the right buttons open the door, a state
    timeout set by the open state's enter call locks it again; calls are
    answered in every state (code_length)."""
    lock = machine.start_link(([1, 2, 3], otp.self()))
    door("locked")  # the initial state's enter call
    assert otp.call(lock, "code_length") == 3
    press(lock, 3, 1, 2)
    assert otp.call(lock, "buttons") == [3, 1, 2]
    press(lock, 3)
    door("open")
    assert otp.call(lock, "code_length") == 3
    door("locked")  # the state timeout fired in the open state
    assert otp.call(lock, "buttons") == []
    otp.stop(lock)


@pytest.mark.parametrize("machine", [CodeLock, CodeLockOneFunction])
def test_code_lock_postpones_buttons_while_open(node, machine):
    """User's guide, code lock with postpone: buttons pressed while the door
    is open are retried, in order, once the state changes to locked."""
    lock = machine.start_link(([1, 2], otp.self()))
    door("locked")
    press(lock, 1, 2)
    door("open")
    press(lock, 7, 8)  # postponed: the door is open
    assert otp.call(lock, "buttons") == [1]  # as when the door opened: 7 and 8 wait
    door("locked")
    # Retried in the locked state, oldest first.
    assert otp.call(lock, "buttons") == [7, 8]
    otp.stop(lock)


def test_state_functions_dispatch_to_the_method_named_after_the_state(node):
    """gen_statem callback mode state_functions: the state is an atom (a
    str) and Module:StateName(EventType, Content, Data) handles it; info
    messages arrive with event type info."""
    lock = CodeLock.start_link(([1], otp.self()))
    door("locked")
    otp.send(lock, "stray")  # event type info: handle_common keeps state and data
    press(lock, 1)
    door("open")
    otp.stop(lock)


def test_enter_calls_get_the_previous_state(node):
    """gen_statem state_enter: the callback is called with (enter, OldState)
    after each state change and for the initial state (OldState = the
    state itself); NextState to the same state and KeepState make no
    enter call, RepeatState does."""
    me = otp.self()
    m = Recorder.start_link((me, "a", ()))
    assert seen() == ("a", ENTER, "a")
    otp.cast(m, ("do", lambda t, d: NextState("b", d)))
    assert seen()[:2] == ("a", CAST)
    assert seen() == ("b", ENTER, "a")
    otp.cast(m, ("do", lambda t, d: NextState("b", d)))
    assert seen()[:2] == ("b", CAST)
    otp.cast(m, ("do", lambda t, d: KeepState(d)))
    assert seen()[:2] == ("b", CAST)
    otp.cast(m, ("do", lambda t, d: RepeatState(d)))
    assert seen()[:2] == ("b", CAST)
    assert seen() == ("b", ENTER, "b")
    otp.cast(m, ("do", lambda t, d: RepeatStateAndData()))
    assert seen()[:2] == ("b", CAST)
    assert seen() == ("b", ENTER, "b")
    otp.stop(m)
    assert seen()[0] == "terminate"


def test_without_state_enter_no_enter_calls(node):
    """gen_statem callback_mode without state_enter: no enter calls."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: NextState("b", d)))
    assert seen()[:2] == ("a", CAST)
    otp.cast(m, ("do", lambda t, d: KeepStateAndData()))
    assert seen()[:2] == ("b", CAST)
    otp.stop(m)
    assert seen()[0] == "terminate"


def test_enter_call_may_not_postpone_insert_events_or_change_state(node):
    """gen_statem state enter calls: postpone and next_event are not enter
    actions (bad_state_enter_action_from_state_function), and the state
    cannot change (bad_state_enter_return_from_state_function)."""
    otp.trap_exit(True)
    for script, why in [
        (lambda old: KeepStateAndData([Postpone()]), "bad_state_enter_action_from_state_function"),
        (lambda old: KeepStateAndData([NextEvent(INTERNAL, 1)]), "bad_state_enter_action_from_state_function"),
        (lambda old: NextState("elsewhere", {}), "bad_state_enter_return_from_state_function"),
    ]:
        m = Recorder.start_link((otp.self(), "a", ()))
        assert seen() == ("a", ENTER, "a")

        def arm(t, d, script=script):
            return NextState("b", {**d, "on_enter": {"b": script}})

        otp.cast(m, ("do", arm))
        assert seen()[:2] == ("a", CAST)
        assert seen() == ("b", ENTER, "a")
        terminated = seen()
        assert terminated[0] == "terminate" and terminated[1][0] == why
        assert exit_of(m).reason == terminated[1]


def test_next_events_come_first_in_order(node):
    """gen_statem next_event action: inserted events are handled next, in
    the order of the action list, before any message not yet handled."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([NextEvent(INTERNAL, 1), NextEvent("internal", 2)])))
    otp.cast(m, "later")
    assert seen()[:2] == ("a", CAST)
    assert seen() == ("a", INTERNAL, 1)
    assert seen() == ("a", INTERNAL, 2)
    assert seen() == ("a", CAST, "later")
    otp.stop(m)


def test_init_actions_run_as_a_transition(node):
    """gen_statem init/1 {ok, State, Data, Actions}: the actions run before
    any message (an inserted event, a timeout)."""
    m = Plain.start_link((otp.self(), "a", [NextEvent(INTERNAL, "first"), StateTimeout(0, "tick")]))
    assert seen() == ("a", INTERNAL, "first")
    assert seen() == ("a", EventType.STATE_TIMEOUT, "tick")
    otp.stop(m)


def test_postponed_events_retried_after_a_state_change_in_order(node):
    """gen_statem postpone: a postponed event is retried after a state
    change (not after keep_state nor repeat_state), oldest first, after the
    events the transition inserted."""
    m = Plain.start_link((otp.self(), "closed", ()))
    otp.cast(m, ("do", lambda t, d: KeepStateAndData() if d.get("open") else KeepStateAndData([Postpone()]), "e1"))
    # A single action may stand without its list.
    otp.cast(m, ("do", lambda t, d: KeepStateAndData() if d.get("open") else KeepStateAndData(Postpone()), "e2"))
    assert seen()[:2] == ("closed", CAST)
    assert seen()[:2] == ("closed", CAST)
    otp.cast(m, ("do", lambda t, d: RepeatState(d)))
    assert seen()[:2] == ("closed", CAST)
    otp.send(m, "marker")
    assert seen() == ("closed", INFO, "marker")  # nothing retried
    otp.cast(m, ("do", lambda t, d: NextState("open", {**d, "open": True}, [NextEvent(INTERNAL, "inserted")])))
    assert seen()[:2] == ("closed", CAST)
    assert seen() == ("open", INTERNAL, "inserted")
    first, second = seen(), seen()
    assert (first[:2], first[2][2]) == (("open", CAST), "e1")
    assert (second[:2], second[2][2]) == (("open", CAST), "e2")
    assert otp_sys.get_status(m).behaviour_status["postponed"] == 0
    otp.stop(m)


def test_postpone_with_state_change_retries_at_once(node):
    """gen_statem postpone: an event postponed by a transition that changes
    the state is retried right away, in the new state."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(
        m, ("do", lambda t, d: KeepState(d) if d.get("moved") else NextState("b", {**d, "moved": True}, Postpone()))
    )
    assert seen()[:2] == ("a", CAST)
    assert seen()[:2] == ("b", CAST)  # the same event, retried
    otp.stop(m)


# ---------------------------------------------------------- calls, replies


def test_reply_actions_and_replies_from_a_later_state(node):
    """gen_statem reply action {reply, From, Reply} and gen_statem:reply/2: a
    call can be answered in the transition, or later from another state."""
    m = Plain.start_link((otp.self(), "a", ()))
    assert otp.call(m, ("do", lambda t, d: KeepStateAndData([ReplyTo(t.from_, "now")]))) == "now"
    assert seen()[0] == "a"

    def keep_caller(t, d):
        return NextState("waiting", {**d, "caller": t.from_})

    caller = otp.spawn(_call_and_report, m, ("do", keep_caller), otp.self())
    assert seen()[:1] == ("a",)
    otp.cast(m, ("do", lambda t, d: NextState("a", d, [ReplyTo(d["caller"], "later")])))
    assert seen()[:2] == ("waiting", CAST)
    assert recv(lambda msg: isinstance(msg, tuple) and msg[0] == "answer") == ("answer", "later")
    wait_dead(caller)
    otp.cast(m, ("do", lambda t, d: KeepStateAndData()))
    assert seen()[:2] == ("a", CAST)
    otp.stop(m)


def _call_and_report(server, request, to):
    otp.send(to, ("answer", otp.call(server, request)))


def test_stop_and_reply_replies_then_terminates(node):
    """gen_statem stop_and_reply: the replies are sent, then terminate runs
    with the reason and the new data, and the machine exits."""
    otp.trap_exit(True)
    m = Plain.start_link((otp.self(), "a", ()))

    def finish(t, d):
        return StopAndReply("normal", [ReplyTo(t.from_, "bye")], {**d, "done": True})

    assert otp.call(m, ("do", finish)) == "bye"
    assert seen()[0] == "a"
    terminated = seen()
    assert terminated[:3] == ("terminate", "normal", "a") and terminated[3]["done"] is True
    assert exit_of(m).reason == "normal"


def test_terminate_runs_on_stop_crash_and_otp_stop_but_not_when_killed(node):
    """gen_statem terminate/3: called for {stop, Reason, Data}, for a
    callback that raises, for gen_statem:stop; not when an exit signal the
    machine does not trap kills it."""
    otp.trap_exit(True)
    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: otp.Stop("shutdown", {**d, "n": 1})))
    assert seen()[:2] == ("a", CAST)
    t = seen()
    assert t[:3] == ("terminate", "shutdown", "a") and t[3]["n"] == 1
    assert exit_of(m).reason == "shutdown"

    m = Plain.start_link((otp.self(), "a", ()))
    otp.cast(m, ("do", lambda t, d: 1 / 0))
    assert seen()[:2] == ("a", CAST)
    t = seen()
    assert t[0] == "terminate" and isinstance(t[1], otp.Crash) and t[1].type_name == "ZeroDivisionError"
    assert exit_of(m).reason == t[1]

    m = Plain.start_link((otp.self(), "b", ()))
    otp.stop(m, "normal")
    assert seen()[:3] == ("terminate", "normal", "b")
    assert exit_of(m).reason == "normal"

    m = Plain.start((otp.self(), "c", ()))
    ref = otp.monitor(m)
    otp.exit(m, "kill")
    assert down_of(ref).reason == "killed"
    assert nothing_matching(lambda msg: isinstance(msg, tuple) and msg[0] == "terminate")


def test_call_to_a_machine_that_crashes_raises_callee_exit(node):
    """gen_statem:call: the caller gets the machine's exit reason if it
    exits before answering; a bad return value stops it with
    {bad_return_from_state_function, Result}."""
    otp.trap_exit(True)
    m = Plain.start_link((otp.self(), "a", ()))
    with pytest.raises(otp.CalleeExit) as info:
        otp.call(m, ("do", lambda t, d: "not a result"))
    assert info.value.reason == ("bad_return_from_state_function", "not a result")
    assert exit_of(m).reason == info.value.reason


# --------------------------------------------------------- start and names


class Starts(GenStatem):
    callback_mode = "handle_event_function"

    def init(self, how):
        if how == "ignore":
            return otp.Ignore
        if how == "stop":
            return otp.Stop("no")
        if how == "raise":
            raise KeyError("missing")
        if how == "bad":
            return ["state", "data"]
        return "ready", how

    def handle_event(self, event_type, content, state, data):
        if isinstance(event_type, Call):
            return KeepStateAndData([ReplyTo(event_type.from_, (state, data, content))])
        return KeepStateAndData()


class NoMode(GenStatem):
    def init(self, args):
        return "s", None


def test_init_results(node):
    """gen_statem:start_link/3 and init/1: {ok, State, Data} starts,
    ignore gives ignore, {stop, Reason} and an exception give
    {error, Reason} without killing the linked starter, a bad return
    {bad_return_from_init, Result}."""
    otp.trap_exit(True)  # a failed start must not send us an exit signal either
    assert Starts.start_link("ignore") is None
    with pytest.raises(otp.StartError) as info:
        Starts.start_link("stop")
    assert info.value.reason == "no"
    with pytest.raises(otp.StartError) as info:
        Starts.start_link("raise")
    assert isinstance(info.value.reason, otp.Crash) and info.value.reason.type_name == "KeyError"
    with pytest.raises(otp.StartError) as info:
        Starts.start_link("bad")
    assert info.value.reason == ("bad_return_from_init", ["state", "data"])
    assert nothing_matching(lambda msg: isinstance(msg, otp.EXIT))
    m = Starts.start_link(7)
    assert otp.call(m, "hello") == ("ready", 7, "hello")
    otp.stop(m)


def test_bad_callback_mode_stops_the_machine(node):
    """gen_statem callback_mode/0: a value other than state_functions or
    handle_event_function stops the machine with {bad_callback_mode, Mode}."""
    otp.trap_exit(True)
    m = NoMode.start_link()
    assert exit_of(m).reason == ("bad_callback_mode", None)


def test_name_registration_and_clash(node):
    """gen_statem:start_link({local, Name}, ...): the machine is reachable by
    name; a second start with the name fails with {already_started, Pid}."""
    m = Starts.start_link("x", name="statem-lock")
    assert otp.call("statem-lock", "hi") == ("ready", "x", "hi")
    with pytest.raises(otp.StartError) as info:
        Starts.start_link("y", name="statem-lock")
    assert info.value.reason == ("already_started", m)
    with pytest.raises(otp.StartError) as info:
        Starts.start(name=["not", "a", "name"])
    assert info.value.reason[0] == "invalid_name"
    otp.stop("statem-lock")


def test_child_spec_under_a_supervisor(node):
    """gen_statem in a supervision tree: child_spec starts it with
    start_link; a crashed machine is restarted under its name."""
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Starts.child_spec("sv", name="statem-child")])
    sup_api.subscribe(sup)
    (child,) = sup_api.which_children(sup)
    assert child.id == "Starts" and otp.whereis("statem-child") == child.pid
    assert otp.call("statem-child", 1) == ("ready", "sv", 1)
    otp.exit(child.pid, "kill")
    restarted = recv(lambda m: type(m) is tuple and len(m) >= 4 and m[:4] == ("$supervisor", sup, "started", "Starts"))
    assert restarted[4] != child.pid
    assert otp.call("statem-child", 2) == ("ready", "sv", 2)
    assert otp.whereis("statem-child") == restarted[4]
    otp.exit(sup, "shutdown")
    assert exit_of(sup).reason == "shutdown"


# --------------------------------------------------------------------- sys


def test_sys_get_replace_state_status_and_suspend(node):
    """sys:get_state/replace_state on a gen_statem ({State, Data}),
    sys:get_status (postponed events, timeouts), sys:suspend/resume (only
    system messages while suspended, the rest handled in order after)."""
    m = Plain.start_link((otp.self(), "a", ()))
    assert otp_sys.get_state(m)[0] == "a"
    state, data = otp_sys.replace_state(m, lambda sd: ("b", {**sd[1], "k": 1}))
    assert state == "b" and data["k"] == 1
    otp.cast(m, ("do", lambda t, d: KeepStateAndData([Postpone(), StateTimeout(30, "st")])))
    assert seen()[:2] == ("b", CAST)
    status = otp_sys.get_status(m)
    assert status.behaviour == "gen_statem"
    assert status.behaviour_status["postponed"] == 1
    assert status.behaviour_status["state"] == "b"
    assert [(t.kind, t.content) for t in status.behaviour_status["timeouts"]] == [(EventType.STATE_TIMEOUT, "st")]
    otp_sys.suspend(m)
    otp.send(m, "one")
    otp.send(m, "two")
    assert otp_sys.get_state(m)[0] == "b"  # still answers system messages
    assert nothing_matching(lambda msg: isinstance(msg, tuple) and msg[:1] == ("b",), timeout=0.2)
    otp_sys.resume(m)
    assert seen() == ("b", INFO, "one")
    assert seen() == ("b", INFO, "two")
    otp.stop(m)


def test_sys_statistics_count_events(node):
    """sys:statistics on a gen_statem: messages in, replies out, events."""
    m = Plain.start_link((otp.self(), "a", ()))
    otp_sys.statistics(m, True)
    assert otp.call(m, ("do", lambda t, d: KeepStateAndData([ReplyTo(t.from_, 1), NextEvent(INTERNAL, 2)]))) == 1
    assert seen()[0] == "a" and seen() == ("a", INTERNAL, 2)
    stats = otp_sys.statistics(m, "get")
    assert (stats.messages_in, stats.messages_out, stats.events) == (1, 1, 2)
    otp.stop(m)


def test_os_process_per_machine(node):
    """A gen_statem runs in its own OS process."""
    m = Starts.start_link(0)
    assert m.ospid != os.getpid()
    otp.stop(m)
