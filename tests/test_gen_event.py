"""gen_event: handlers, notify/sync_notify, call, supervised handlers,
swaps, crash isolation, stop; under both start methods."""

from __future__ import annotations

import pytest
from crash_reports import crash_reports
from helpers import down_of, exit_of, recv

import otp

GE = otp.GenEvent


@pytest.fixture
def node(start_method, node):
    return node


class Recorder(otp.EventHandler):
    """State ``(pid, tag)``: reports what it sees to ``pid``.  Events and
    requests ``('crash', tag)``, ``('garbage', tag)``, ``('leave', tag)``
    and ``('swap', tag, new)`` address one handler."""

    def init(self, args):
        if isinstance(args, otp.SwapArgs):
            pid, tag = args.args
            otp.send(pid, ("swapped_in", tag, args.term))
            return (pid, tag)
        if args == "refuse":
            raise RuntimeError("no thanks")
        return args

    def _own(self, msg, state):
        return type(msg) is tuple and len(msg) >= 2 and msg[1] == state[1]

    def handle_event(self, event, state):
        pid, tag = state
        if self._own(event, state):
            if event[0] == "crash":
                raise ValueError(f"boom {tag}")
            if event[0] == "garbage":
                return otp.NoReply(state)
            if event[0] == "leave":
                return otp.RemoveHandler()
            if event[0] == "swap":
                return otp.SwapHandler("handing over", state, event[2], (pid, event[2][1]))
        otp.send(pid, ("event", tag, event))
        return state

    def handle_call(self, request, state):
        if self._own(request, state):
            if request[0] == "crash":
                raise ValueError("call boom")
            if request[0] == "garbage":
                return ("not", "a", "reply")
            if request[0] == "leave":
                return otp.RemoveHandler("bye")
        return otp.Reply((state[1], request), state)

    def handle_info(self, msg, state):
        otp.send(state[0], ("info", state[1], msg))
        return state

    def terminate(self, arg, state):
        otp.send(state[0], ("terminate", state[1], arg))
        return ("terminated", state[1])


def events(tag=None):
    """Every ('event', tag, event) already queued, in arrival order."""
    out = []
    while True:
        try:
            msg = otp.receive(0, lambda m: type(m) is tuple and m[0] == "event" and (tag is None or m[1] == tag))
        except otp.Timeout:
            return out
        out.append(msg[1:])


def terminated(tag):
    return recv(lambda m: type(m) is tuple and m[:2] == ("terminate", tag))[2]


def removed(handler):
    return recv(lambda m: isinstance(m, otp.HandlerRemoved) and m.handler == handler)


def test_sync_notify_returns_after_every_handler_handled_the_event_newest_first(node):
    """gen_event:add_handler/3, notify/2, sync_notify/2, which_handlers/1:
    handlers run in the order OTP keeps them (most recently added first),
    and sync_notify returns after all of them handled the event."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, (Recorder, 1), (me, 1))
    GE.add_handler(mgr, (Recorder, 2), (me, 2))
    assert GE.which_handlers(mgr) == [(Recorder, 2), (Recorder, 1)]
    GE.notify(mgr, "a")
    GE.sync_notify(mgr, "b")
    assert events() == [(2, "a"), (1, "a"), (2, "b"), (1, "b")]
    GE.stop(mgr)


def test_call_delete_handler_and_unknown_handlers(node):
    """gen_event:call/4 answers from the handler's handle_call;
    delete_handler/3 returns what terminate/2 returned; an unknown handler
    is {error, module_not_found} / {error, bad_module} (HandlerNotFound)."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, (Recorder, 1), (me, 1))
    assert GE.call(mgr, (Recorder, 1), "q") == (1, "q")
    assert GE.delete_handler(mgr, (Recorder, 1), "bye now") == ("terminated", 1)
    assert terminated(1) == "bye now"
    with pytest.raises(otp.HandlerNotFound):
        GE.delete_handler(mgr, (Recorder, 1), None)
    with pytest.raises(otp.HandlerNotFound):
        GE.call(mgr, Recorder, "q")
    with pytest.raises(TypeError):
        GE.add_handler(mgr, object, None)
    assert GE.which_handlers(mgr) == []
    GE.stop(mgr)


def test_init_failure_installs_nothing(node):
    """gen_event:add_handler/3 when Module:init/1 fails: {'EXIT', Reason}
    (HandlerError with the Crash), and the handler is not installed."""
    mgr = GE.start_link()
    with pytest.raises(otp.HandlerError) as info:
        GE.add_handler(mgr, Recorder, "refuse")
    assert isinstance(info.value.reason, otp.Crash) and info.value.reason.message == "no thanks"
    assert GE.which_handlers(mgr) == []
    GE.stop(mgr)


def test_a_crashing_handler_is_removed_and_the_others_carry_on(node):
    """gen_event: a handler whose callback fails is deleted with
    terminate({error, {'EXIT', Reason}}, State); no other handler is
    affected and the manager lives on; the failure is logged as a crash
    report."""
    with crash_reports() as reports:
        mgr = GE.start_link()
        me = otp.self()
        GE.add_handler(mgr, (Recorder, 1), (me, 1))
        GE.add_handler(mgr, (Recorder, 2), (me, 2))
        GE.sync_notify(mgr, ("crash", 1))
        arg = terminated(1)
        assert isinstance(arg, otp.HandlerFailed) and arg.reason.message == "boom 1"
        assert GE.which_handlers(mgr) == [(Recorder, 2)]
        GE.sync_notify(mgr, "after")
        assert events() == [(2, ("crash", 1)), (2, "after")]
        record = reports.wait_for(lambda r: r.otp_pid == mgr)
        assert record.otp_reason.message == "boom 1" and "ValueError: boom 1" in record.getMessage()
        GE.stop(mgr)


def test_a_bad_return_value_removes_the_handler(node):
    """gen_event: a callback returning an unexpected Term deletes the
    handler with terminate({error, Term}, State); for call/4 the caller
    gets {error, Term} (HandlerError)."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, (Recorder, 1), (me, 1))
    GE.add_handler(mgr, (Recorder, 2), (me, 2))
    GE.notify(mgr, ("garbage", 1))
    assert terminated(1) == otp.HandlerFailed(("bad_return_value", otp.NoReply((me, 1))))
    with pytest.raises(otp.HandlerError) as info:
        GE.call(mgr, (Recorder, 2), ("garbage", 2))
    assert info.value.reason == ("bad_return_value", ("not", "a", "reply"))
    assert terminated(2) == otp.HandlerFailed(info.value.reason)
    assert GE.which_handlers(mgr) == []
    assert otp.is_alive(mgr)
    GE.stop(mgr)


def test_a_call_that_crashes_removes_the_handler_and_raises_in_the_caller(node):
    """gen_event:call/4 when Module:handle_call/2 fails: {error, {'EXIT',
    Reason}} to the caller, and the handler is deleted."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, Recorder, (me, "c"))
    with pytest.raises(otp.HandlerError) as info:
        GE.call(mgr, Recorder, ("crash", "c"))
    assert isinstance(info.value.reason, otp.Crash) and info.value.reason.message == "call boom"
    assert isinstance(terminated("c"), otp.HandlerFailed)
    assert GE.which_handlers(mgr) == []
    GE.stop(mgr)


def test_remove_handler_results(node):
    """gen_event: remove_handler from handle_event and {remove_handler,
    Reply} from handle_call delete the handler with
    terminate(remove_handler, State); the call gets Reply."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, (Recorder, 1), (me, 1))
    GE.add_handler(mgr, (Recorder, 2), (me, 2))
    GE.notify(mgr, ("leave", 1))
    assert terminated(1) is otp.HandlerExit.REMOVE_HANDLER
    assert GE.call(mgr, (Recorder, 2), ("leave", 2)) == "bye"
    assert terminated(2) is otp.HandlerExit.REMOVE_HANDLER
    assert GE.which_handlers(mgr) == []
    GE.stop(mgr)


def test_sup_handler_owner_is_told_of_every_removal(node):
    """gen_event:add_sup_handler/3: the caller receives {gen_event_EXIT,
    Handler, Reason} (HandlerRemoved) when the handler is deleted (normal),
    fails (the failure) or the manager terminates (shutdown)."""
    otp.trap_exit(True)
    mgr = GE.start_link()
    me = otp.self()
    GE.add_sup_handler(mgr, (Recorder, "d"), (me, "d"))
    GE.add_sup_handler(mgr, (Recorder, "c"), (me, "c"))
    GE.add_sup_handler(mgr, (Recorder, "s"), (me, "s"))
    GE.delete_handler(mgr, (Recorder, "d"), None)
    assert removed((Recorder, "d")) == otp.HandlerRemoved(mgr, (Recorder, "d"), "normal")
    GE.notify(mgr, ("crash", "c"))
    assert removed((Recorder, "c")).reason.message == "boom c"
    GE.stop(mgr)
    assert terminated("s") is otp.HandlerExit.STOP
    assert removed((Recorder, "s")).reason == "shutdown"
    assert exit_of(mgr).reason == "normal"


def sup_owner(mgr, me):
    otp.GenEvent.add_sup_handler(mgr, (Recorder, "owned"), (me, "owned"))
    otp.send(me, ("added", otp.self()))
    otp.receive()
    raise RuntimeError("owner gone")


def test_the_handler_goes_when_its_owner_dies(node):
    """gen_event:add_sup_handler/3: when the calling process terminates
    with Reason, the manager deletes its handler with
    terminate({stop, Reason}, State) (OwnerExited), then calls handle_info
    of the other handlers with the EXIT."""
    mgr = GE.start_link()
    me = otp.self()
    GE.add_handler(mgr, (Recorder, "other"), (me, "other"))
    owner = otp.spawn(sup_owner, mgr, me)
    recv(lambda m: m == ("added", owner))
    assert GE.which_handlers(mgr) == [(Recorder, "owned"), (Recorder, "other")]
    otp.send(owner, "die")
    arg = terminated("owned")
    assert isinstance(arg, otp.OwnerExited) and arg.reason.message == "owner gone"
    info = recv(lambda m: type(m) is tuple and m[:2] == ("info", "other"))[2]
    assert info == otp.EXIT(owner, arg.reason)
    assert GE.which_handlers(mgr) == [(Recorder, "other")]
    GE.stop(mgr)


def test_swap_handler_passes_terminates_result_and_keeps_the_supervisor(node):
    """gen_event:swap_handler/3: Old:terminate(Args1, State) then
    New:init({Args2, Term}); the supervised connection moves to the new
    handler and the owner gets {gen_event_EXIT, Old, {swapped, New, Pid}}."""
    otp.trap_exit(True)
    mgr = GE.start_link()
    me = otp.self()
    GE.add_sup_handler(mgr, (Recorder, "old"), (me, "old"))
    GE.swap_handler(mgr, ((Recorder, "old"), "args1"), ((Recorder, "new"), (me, "new")))
    assert terminated("old") == "args1"
    assert recv(lambda m: type(m) is tuple and m[0] == "swapped_in") == ("swapped_in", "new", ("terminated", "old"))
    assert removed((Recorder, "old")).reason == otp.Swapped((Recorder, "new"), me)
    assert GE.which_handlers(mgr) == [(Recorder, "new")]
    GE.delete_handler(mgr, (Recorder, "new"))
    assert removed((Recorder, "new")).reason == "normal"
    # From a callback: {swap_handler, Args1, State, Handler2, Args2}.
    GE.add_handler(mgr, (Recorder, 1), (me, 1))
    GE.sync_notify(mgr, ("swap", 1, (Recorder, 9)))
    assert terminated(1) == "handing over"
    assert recv(lambda m: type(m) is tuple and m[0] == "swapped_in") == ("swapped_in", 9, ("terminated", 1))
    assert GE.which_handlers(mgr) == [(Recorder, 9)]
    GE.stop(mgr)


def test_a_manager_under_a_supervisor_terminates_its_handlers(node):
    """gen_event in a supervision tree (child_spec, start_link with a name):
    ordered to terminate by its supervisor, it calls terminate(stop, State)
    of each handler."""
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([GE.child_spec("events", name="events")])
    me = otp.self()
    GE.add_handler("events", Recorder, (me, "r"))
    GE.sync_notify("events", "hi")
    assert events() == [("r", "hi")]
    otp.exit(sup, "shutdown")
    assert terminated("r") is otp.HandlerExit.STOP
    assert exit_of(sup).reason == "shutdown"


def test_notify_to_a_missing_manager_does_not_fail_and_stop_waits(node):
    """gen_event:notify/2 never fails; gen_event:stop/1 returns after the
    manager exited."""
    mgr = GE.start()
    ref = otp.monitor(mgr)
    GE.stop(mgr)
    assert down_of(ref).reason == "normal"
    GE.notify(mgr, "nobody listens")
    with pytest.raises(otp.NoProc):
        GE.which_handlers(mgr)
