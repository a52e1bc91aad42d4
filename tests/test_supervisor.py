"""Supervisors: what OTP's supervisor does, group by group.

Groups: sup_start, sup_stop, child_adm, child_specs, sup_flags, restart_*
(with *_escalation), normal/shutdown/abnormal termination for permanent,
transient and temporary children, temporary_bystander, count_children,
hanging_restart_loop, auto_shutdown, tree.  Waits are on supervisor events
(``otp.supervisor.subscribe``), monitors and exit signals, never on time.
"""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, exit_of, nothing_matching
from procs import (
    Child,
    ConfiguredSup,
    SlowToStop,
    failing_start,
    ignoring_start,
    start_after_failures,
    start_unless_file,
)

import otp
from otp import supervisor as sup_api

T = 10.0


def spec(child_id, value=None, **kw):
    return otp.child_spec(child_id, start=(Child.start_link, (value if value is not None else child_id,)), **kw)


def start_sup(children, **flags):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link(children, **flags)
    sup_api.subscribe(sup)
    return sup


def event(sup, kind, child_id=None):
    def match(m):
        return (
            type(m) is tuple
            and len(m) >= 4
            and m[0] == "$supervisor"
            and m[1] == sup
            and m[2] == kind
            and (child_id is None or m[3] == child_id)
        )

    return otp.receive(T, match)


def pids(sup):
    return {c.id: c.pid for c in sup_api.which_children(sup)}


def kill(pid):
    os.kill(pid.ospid, signal.SIGKILL)


# ---------------------------------------------------------------- sup_start


def test_sup_start_normal(node):
    sup = start_sup([spec("a"), spec("b")])
    children = sup_api.which_children(sup)
    assert [c.id for c in children] == ["a", "b"]
    assert all(otp.is_alive(c.pid) for c in children)
    assert otp.call(children[0].pid, "x") == "a"


def test_sup_start_ignore_init(node):
    assert ConfiguredSup.start_link(otp.Ignore) is None


def test_sup_start_ignore_child(node):
    sup = start_sup([otp.child_spec("i", start=ignoring_start), spec("b")])
    assert pids(sup)["i"] is None
    assert sup_api.count_children(sup) == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}


def test_sup_start_ignore_temporary_child(node):
    sup = start_sup([otp.child_spec("i", start=ignoring_start, restart="temporary"), spec("b")])
    assert list(pids(sup)) == ["b"]


def test_sup_start_error_return_stops_started_children(node):
    otp.trap_exit(True)
    with pytest.raises(otp.StartError) as info:
        otp.Supervisor.start_link([spec("a"), otp.child_spec("bad", start=(failing_start, ("nope",)))])
    assert info.value.reason == ("shutdown", ("failed_to_start_child", "bad", "nope"))


def test_sup_start_fail_in_init(node):
    with pytest.raises(otp.StartError) as info:
        ConfiguredSup.start_link("not a tuple")
    assert info.value.reason[0] == "bad_return"


def test_sup_start_bad_spec(node):
    with pytest.raises(otp.StartError) as info:
        ConfiguredSup.start_link((otp.SupFlags(), [{"id": "x", "start": Child.start_link, "restart": "sometimes"}]))
    assert info.value.reason == ("start_spec", ("invalid_restart_type", "sometimes"))


def test_start_order_is_the_spec_order(node):
    sup = start_sup([spec(i) for i in range(6)])
    started = [c.pid for c in sup_api.which_children(sup)]
    assert [c.id for c in sup_api.which_children(sup)] == list(range(6))
    assert len(set(started)) == 6


# ----------------------------------------------------------------- sup_stop


def _stop_and_watch(sup, child):
    ref = otp.monitor(child)
    otp.exit(sup, "shutdown")
    return down_of(ref).reason


def test_sup_stop_brutal_kill(node):
    sup = start_sup([otp.child_spec("s", start=(SlowToStop.start_link, (30,)), shutdown="brutal_kill")])
    assert _stop_and_watch(sup, pids(sup)["s"]) == "killed"


def test_sup_stop_timeout_kills_a_hanging_child(node):
    sup = start_sup([otp.child_spec("s", start=(SlowToStop.start_link, (30,)), shutdown=0.2)])
    assert _stop_and_watch(sup, pids(sup)["s"]) == "killed"


def test_sup_stop_infinity_waits_for_terminate(node):
    sup = start_sup([otp.child_spec("s", start=(SlowToStop.start_link, (0.3,)), shutdown="infinity")])
    assert _stop_and_watch(sup, pids(sup)["s"]) == "shutdown"


def test_shutdown_order_recorded(node, tmp_path):
    path = str(tmp_path / "order")

    class Recorder(otp.GenServer):
        def init(self, name):
            otp.trap_exit(True)
            return name

        def terminate(self, reason, name):
            with open(path, "a") as f:
                f.write(f"{name}\n")

    sup = start_sup([otp.child_spec(i, start=(Recorder.start_link, (i,))) for i in "abcd"])
    otp.exit(sup, "shutdown")
    exit_of(sup)
    with open(path) as f:
        assert f.read().split() == ["d", "c", "b", "a"]


# ---------------------------------------------------------------- child_adm


def test_child_adm(node):
    sup = start_sup([spec("a")])
    b = sup_api.start_child(sup, spec("b"))
    assert pids(sup)["b"] == b
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.start_child(sup, spec("b"))
    assert info.value.reason == ("already_started", b)
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.restart_child(sup, "b")
    assert info.value.reason == "running"
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.delete_child(sup, "b")
    assert info.value.reason == "running"
    sup_api.terminate_child(sup, "b")
    assert pids(sup)["b"] is None
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.start_child(sup, spec("b"))
    assert info.value.reason == "already_present"
    b2 = sup_api.restart_child(sup, "b")
    assert b2 != b and otp.is_alive(b2)
    sup_api.terminate_child(sup, "b")
    sup_api.delete_child(sup, "b")
    assert list(pids(sup)) == ["a"]
    for op in (sup_api.terminate_child, sup_api.restart_child, sup_api.delete_child, sup_api.get_childspec):
        with pytest.raises(otp.SupervisorError) as info:
            op(sup, "nope")
        assert info.value.reason == "not_found"
    assert sup_api.get_childspec(sup, "a").id == "a"


def test_start_child_error_discards_the_spec(node):
    sup = start_sup([])
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.start_child(sup, otp.child_spec("x", start=(failing_start, ("why",))))
    assert info.value.reason == "why"
    assert sup_api.which_children(sup) == []


def test_terminate_child_by_pid_and_temporary_spec_is_removed(node):
    sup = start_sup([spec("t", restart="temporary"), spec("p")])
    sup_api.terminate_child(sup, pids(sup)["t"])
    assert list(pids(sup)) == ["p"]


def test_simple_one_for_one_admin(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link(
        [otp.child_spec("tpl", start=(Child.start_link, ()))], strategy="simple_one_for_one"
    )
    a = sup_api.start_child(sup, ["va"])
    b = sup_api.start_child(sup, ("vb",))
    assert otp.call(a, "x") == "va" and otp.call(b, "x") == "vb"
    assert sup_api.count_children(sup) == {"specs": 1, "active": 2, "supervisors": 0, "workers": 2}
    for op in (sup_api.restart_child, sup_api.delete_child):
        with pytest.raises(otp.SupervisorError) as info:
            op(sup, "tpl")
        assert info.value.reason == "simple_one_for_one"
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.terminate_child(sup, "tpl")
    assert info.value.reason == "simple_one_for_one"
    sup_api.terminate_child(sup, a)
    assert [c.pid for c in sup_api.which_children(sup)] == [b]


# -------------------------------------------------------------- child_specs


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"start": Child.start_link}, "missing_id"),
        ({"id": "x"}, "missing_start"),
        ({"id": "x", "start": 42}, ("invalid_mfa", 42)),
        ({"id": "x", "start": Child.start_link, "restart": "always"}, ("invalid_restart_type", "always")),
        ({"id": "x", "start": Child.start_link, "shutdown": -1}, ("invalid_shutdown", -1)),
        ({"id": "x", "start": Child.start_link, "shutdown": "soon"}, ("invalid_shutdown", "soon")),
        ({"id": "x", "start": Child.start_link, "type": "thread"}, ("invalid_child_type", "thread")),
        ({"id": "x", "start": Child.start_link, "significant": True}, ("invalid_significant", True)),
        ({"id": ["unhashable"], "start": Child.start_link}, ("invalid_child_id", ["unhashable"])),
    ],
)
def test_child_specs_are_validated(kwargs, reason):
    with pytest.raises(otp.SupervisorError) as info:
        otp.child_spec(**kwargs)
    assert info.value.reason == reason


def test_child_spec_defaults():
    worker = otp.child_spec("w", start=Child.start_link)
    assert (worker.restart, worker.shutdown, worker.type, worker.significant) == ("permanent", 5.0, "worker", False)
    assert otp.child_spec("s", start=Child.start_link, type="supervisor").shutdown == "infinity"
    assert Child.child_spec(1).id == "Child"


def test_check_childspecs():
    assert sup_api.check_childspecs([spec("a"), spec("b")])[1].id == "b"
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.check_childspecs([spec("a"), spec("a")])
    assert info.value.reason == ("duplicate_child_name", "a")


# ---------------------------------------------------------------- sup_flags


@pytest.mark.parametrize(
    "flags, reason",
    [
        ({"strategy": "all_for_one"}, ("invalid_strategy", "all_for_one")),
        ({"intensity": -1}, ("invalid_intensity", -1)),
        ({"period": 0}, ("invalid_period", 0)),
        ({"auto_shutdown": "sometimes"}, ("invalid_auto_shutdown", "sometimes")),
    ],
)
def test_sup_flags_are_validated(node, flags, reason):
    with pytest.raises(otp.StartError) as info:
        otp.Supervisor.start_link([], **flags)
    assert info.value.reason == ("start_spec", reason)


# ------------------------------------------------------------ restart_*


def test_restart_one_for_one(node):
    sup = start_sup([spec("a"), spec("b"), spec("c")], strategy="one_for_one", intensity=5)
    before = pids(sup)
    kill(before["b"])
    event(sup, "started", "b")
    after = pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]


def test_restart_one_for_all(node):
    sup = start_sup([spec("a"), spec("b"), spec("c")], strategy="one_for_all", intensity=5)
    before = pids(sup)
    kill(before["b"])
    for child_id in "abc":
        event(sup, "started", child_id)
    after = pids(sup)
    assert all(after[i] != before[i] for i in "abc")


def test_restart_rest_for_one(node):
    sup = start_sup([spec("a"), spec("b"), spec("c")], strategy="rest_for_one", intensity=5)
    before = pids(sup)
    kill(before["b"])
    assert event(sup, "started", "b")[3] == "b"
    assert event(sup, "started", "c")[3] == "c"
    after = pids(sup)
    assert after["a"] == before["a"] and after["b"] != before["b"] and after["c"] != before["c"]


def test_restart_simple_one_for_one(node):
    sup = start_sup([otp.child_spec("tpl", start=(Child.start_link, ()))], strategy="simple_one_for_one", intensity=5)
    a = sup_api.start_child(sup, ["va"])
    assert event(sup, "started")[4] == a
    kill(a)
    new = event(sup, "started")[4]
    assert new != a and otp.call(new, "x") == "va"


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_restart_escalation(node, strategy):
    sup = start_sup([spec("a"), spec("b")], strategy=strategy, intensity=1, period=60)
    kill(pids(sup)["a"])
    event(sup, "started", "a")
    refs = [otp.monitor(pid) for pid in pids(sup).values()]
    kill(pids(sup)["a"])
    assert exit_of(sup).reason == "shutdown"  # too many restarts: it gives up
    for ref in refs:
        assert down_of(ref).reason in ("shutdown", "killed")


def test_restart_simple_one_for_one_escalation(node):
    sup = start_sup([otp.child_spec("tpl", start=(Child.start_link, ()))], strategy="simple_one_for_one", intensity=0)
    kill(sup_api.start_child(sup, [1]))
    assert exit_of(sup).reason == "shutdown"


def test_intensity_zero_gives_up_at_the_first_restart(node):
    sup = start_sup([spec("a")], intensity=0)
    kill(pids(sup)["a"])
    assert exit_of(sup).reason == "shutdown"


def test_group_restart_counts_once(node):
    # A one_for_all restart of 3 children counts as one restart.
    sup = start_sup([spec("a"), spec("b"), spec("c")], strategy="one_for_all", intensity=1, period=60)
    kill(pids(sup)["b"])
    for child_id in "abc":
        event(sup, "started", child_id)
    assert otp.is_alive(sup)


# ------------------------------------------- normal/shutdown/abnormal × types

CASES = [
    ("permanent", "normal", True),
    ("permanent", "shutdown", True),
    ("permanent", "boom", True),
    ("transient", "normal", False),
    ("transient", ("shutdown", "done"), False),
    ("transient", "boom", True),
    ("temporary", "normal", False),
    ("temporary", "boom", False),
]


@pytest.mark.parametrize("restart, reason, restarted", CASES)
def test_termination(node, restart, reason, restarted):
    sup = start_sup([spec("c", restart=restart), spec("marker")], intensity=5)
    old = pids(sup)["c"]
    otp.cast(old, ("die", reason))
    assert event(sup, "exited", "c")[5] == reason
    # The supervisor handles an EXIT before the next request: which_children
    # answers after the restart decision.
    children = pids(sup)
    if restarted:
        assert children["c"] not in (None, old) and otp.is_alive(children["c"])
    elif restart == "temporary":
        assert "c" not in children  # a temporary child is not restarted: its spec is gone
    else:
        assert children["c"] is None


def test_temporary_bystander(node):
    sup = start_sup([spec("perm"), spec("temp", restart="temporary")], strategy="one_for_all", intensity=5)
    temp = pids(sup)["temp"]
    ref = otp.monitor(temp)
    kill(pids(sup)["perm"])
    assert down_of(ref).reason == "shutdown"
    event(sup, "started", "perm")
    assert list(pids(sup)) == ["perm"]  # never restarted, spec removed


# ------------------------------------------------------- count / restarting


def test_count_children(node):
    sup = start_sup(
        [spec("a"), otp.child_spec("s", start=(ConfiguredSup.start_link, ((otp.SupFlags(), []),)), type="supervisor")]
    )
    assert sup_api.count_children(sup) == {"specs": 2, "active": 2, "supervisors": 1, "workers": 1}
    sup_api.terminate_child(sup, "a")
    assert sup_api.count_children(sup)["active"] == 1


def test_failed_restart_is_retried_and_recovers(node, tmp_path):
    # A failed restart is retried (each retry counts against the
    # intensity) until the child starts again.
    counter = str(tmp_path / "attempts")
    sup = start_sup([otp.child_spec("f", start=(start_after_failures, (counter, 3)))], intensity=10, period=60)
    old = pids(sup)["f"]
    kill(old)
    new = event(sup, "started", "f")[4]
    assert new != old and otp.is_alive(new) and otp.is_alive(sup)
    with open(counter) as f:
        assert f.read() == "5"  # first start, 3 failed restarts, the good one


def test_hanging_restart_loop_escalates(node, tmp_path):
    flag = tmp_path / "refuse"
    sup = start_sup(
        [otp.child_spec("f", start=(start_unless_file, (str(flag),))), spec("other")], intensity=3, period=60
    )
    flag.write_text("x")
    kill(pids(sup)["f"])
    assert exit_of(sup).reason == "shutdown"


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_hanging_restart_loop_in_groups(node, tmp_path, strategy):
    flag = tmp_path / "refuse"
    children = [spec("a"), otp.child_spec("f", start=(start_unless_file, (str(flag),))), spec("c")]
    sup = start_sup(children, strategy=strategy, intensity=3, period=60)
    flag.write_text("x")
    kill(pids(sup)["a"])
    assert exit_of(sup).reason == "shutdown"


# ------------------------------------------------------------ auto_shutdown


def test_auto_shutdown_any_significant(node):
    sup = start_sup(
        [spec("sig", restart="transient", significant=True), spec("other")], auto_shutdown="any_significant"
    )
    otp.cast(pids(sup)["sig"], ("die", "normal"))
    assert exit_of(sup).reason == "shutdown"


def test_auto_shutdown_all_significant(node):
    children = [spec("s1", restart="transient", significant=True), spec("s2", restart="temporary", significant=True)]
    sup = start_sup(children, auto_shutdown="all_significant")
    otp.cast(pids(sup)["s1"], ("die", "normal"))
    event(sup, "exited", "s1")
    assert otp.is_alive(sup)
    otp.cast(pids(sup)["s2"], ("die", "boom"))
    assert exit_of(sup).reason == "shutdown"


def test_abnormal_exit_of_transient_significant_child_is_a_restart(node):
    sup = start_sup([spec("sig", restart="transient", significant=True)], auto_shutdown="any_significant", intensity=5)
    otp.cast(pids(sup)["sig"], ("die", "boom"))
    event(sup, "started", "sig")
    assert otp.is_alive(sup)


def test_significant_requires_auto_shutdown(node):
    with pytest.raises(otp.StartError) as info:
        otp.Supervisor.start_link([spec("s", restart="transient", significant=True)])
    assert info.value.reason == ("start_spec", ("invalid_significant", True))


# ---------------------------------------------------------------------- tree


def test_tree_middle_supervisor_killed_is_restarted_with_its_children(node):
    inner = (otp.SupFlags(intensity=5), [spec("leaf1"), spec("leaf2")])
    middle_spec = otp.child_spec("middle", start=(ConfiguredSup.start_link, (inner,)), type="supervisor")
    top = start_sup([middle_spec], intensity=5)
    middle = pids(top)["middle"]
    leaves = [c.pid for c in sup_api.which_children(middle)]
    refs = [otp.monitor(p) for p in leaves]
    kill(middle)
    for ref in refs:
        assert down_of(ref).reason == "killed"  # the link took them down
    new_middle = event(top, "started", "middle")[4]
    new_leaves = [c.pid for c in sup_api.which_children(new_middle)]
    assert all(otp.is_alive(p) for p in new_leaves) and not set(new_leaves) & set(leaves)


def test_escalation_reaches_the_parent_supervisor(node):
    inner = (otp.SupFlags(intensity=0), [spec("leaf")])
    top = start_sup(
        [otp.child_spec("middle", start=(ConfiguredSup.start_link, (inner,)), type="supervisor")], intensity=5
    )
    middle = pids(top)["middle"]
    kill(sup_api.which_children(middle)[0].pid)
    assert event(top, "exited", "middle")[5] == "shutdown"
    event(top, "started", "middle")  # permanent: the top restarts it


def test_supervisor_stops_when_parent_exits(node):
    sup = start_sup([spec("a")])
    child_ref = otp.monitor(pids(sup)["a"])
    otp.exit(sup, "shutdown")
    assert down_of(child_ref).reason == "shutdown"
    assert exit_of(sup).reason == "shutdown"
    assert nothing_matching(lambda m: isinstance(m, otp.EXIT) and m.pid == sup, timeout=0)


# -------------------------------------------------------- dynamic supervisor


def test_dynamic_supervisor_max_children_and_extra_arguments(node):
    otp.trap_exit(True)
    dsup = otp.DynamicSupervisor.start_link(max_children=2, extra_arguments=("prefix",))

    def start_pair(prefix, value):
        return Child.start_link((prefix, value))

    a = sup_api.start_child(dsup, otp.child_spec("x", start=(start_pair, ("a",))))
    assert otp.call(a, "?") == ("prefix", "a")
    sup_api.start_child(dsup, otp.child_spec("x", start=(start_pair, ("b",))))
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.start_child(dsup, otp.child_spec("x", start=(start_pair, ("c",))))
    assert info.value.reason == "max_children"
    assert sup_api.count_children(dsup)["active"] == 2


def test_dynamic_supervisor_restarts_and_stops_children_in_parallel(node):
    otp.trap_exit(True)
    dsup = otp.DynamicSupervisor.start_link()
    sup_api.subscribe(dsup)
    slow = [sup_api.start_child(dsup, otp.child_spec(i, start=(SlowToStop.start_link, (0.3,)))) for i in range(4)]
    worker = sup_api.start_child(dsup, spec("w"))
    while event(dsup, "started")[4] != worker:
        pass
    kill(worker)
    assert otp.is_alive(event(dsup, "started")[4])
    refs = [otp.monitor(p) for p in slow]
    otp.exit(dsup, "shutdown")
    for ref in refs:
        assert down_of(ref).reason == "shutdown"
    exit_of(dsup)


def test_a_request_that_is_no_management_call_is_refused_and_the_supervisor_lives(node):
    sup = start_sup([spec("a")])
    a = pids(sup)["a"]
    with pytest.raises(otp.UnknownOperation):
        otp.ask(sup, "no_such_call")
    with pytest.raises(otp.BadArguments):
        otp.ask(sup, "which_children", "extra")
    reply = otp.call(sup, ("which_children",))
    assert type(reply) is otp.Failed and type(reply.error) is otp.SupervisorError
    assert reply.error.reason == ("unknown_call", ("which_children",))
    otp.cast(sup, "noise")
    otp.send(sup, "noise")
    assert pids(sup) == {"a": a}


def test_dynamic_supervisor_refuses_a_bad_max_children_before_spawning(node):
    for bad in (-1, 1.5, "3"):
        with pytest.raises(otp.SupervisorError) as info:
            otp.DynamicSupervisor.start_link(max_children=bad)
        assert info.value.reason == ("invalid_max_children", bad)


def test_task_supervisor_functions_are_its_methods(node):
    tasks = otp.TaskSupervisor.start_link()
    assert otp.TaskSupervisor.await_(otp.TaskSupervisor.async_nolink(tasks, os.getpid)) != os.getpid()
    assert otp.TaskSupervisor.async_ is otp._task.async_
