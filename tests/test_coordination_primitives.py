"""Coordination primitives as supervised processes: lock, barrier, counter,
leader election; vector clocks."""

from __future__ import annotations

import os
import signal

import pytest
from coordination_agents import (
    CoordAgent,
    barrier_party,
    counter_incrementer,
    lock_holder,
    lock_waiter,
    locked_increments,
    start_agents,
)
from helpers import down_of, recv_tagged

import mabeam
import otp
from mabeam import coordination
from mabeam._app import COORDINATION, TASKS


def test_lock_fifo_and_release_on_holder_death(app):
    me = otp.self()
    pid = coordination.create_lock("res")
    assert coordination.create_lock("res") == pid  # get-or-create, one process
    assert pid in [c.pid for c in otp.supervisor.which_children(COORDINATION)]
    holder = otp.spawn(lock_holder, me, "res")
    assert recv_tagged("acquired") == ("acquired", holder, 1)
    for n, tag in enumerate(("w1", "w2", "w3"), start=1):
        otp.spawn(lock_waiter, me, "res", tag)
        coordination.get_lock_info("res", min_waiting=n)  # queued in this order
    # held until released: a third party times out
    with pytest.raises(coordination.LockTimeout):
        coordination.acquire("res", timeout=0.2)
    info = coordination.get_lock_info("res")
    assert info["holder"] == holder and info["waiting"] == 3  # the timed-out caller withdrew
    otp.exit(holder, "kill")  # dies holding the lock: the lock passes on
    got = sorted(recv_tagged("got")[1:] for _ in range(3))
    assert got == [("w1", 2), ("w2", 3), ("w3", 4)]  # FIFO, one grant each
    with coordination.hold_lock("res", timeout=5) as grant:
        assert grant == 5 and coordination.get_lock_info("res")["holder"] == me
        with pytest.raises(coordination.AlreadyHeld) as held:
            coordination.acquire("res")
        assert held.value.name == ("mabeam.lock", "res")
    assert coordination.get_lock_info("res")["holder"] is None
    with pytest.raises(coordination.NotHolder) as not_holder:
        coordination.release("res")
    assert isinstance(not_holder.value, coordination.PrimitiveError)


def test_lock_waiter_that_dies_leaves_the_queue(app):
    me = otp.self()
    holder = otp.spawn(lock_holder, me, "q")
    recv_tagged("acquired")
    doomed = otp.spawn(lock_waiter, me, "q", "doomed")
    coordination.get_lock_info("q", min_waiting=1)
    otp.exit(doomed, "kill")
    down_of(otp.monitor(doomed))
    otp.spawn(lock_waiter, me, "q", "next")
    coordination.get_lock_info("q", min_waiting=1)
    otp.send(holder, "release")
    assert recv_tagged("released") == ("released", holder)
    assert recv_tagged("got") == ("got", "next", 2)  # the dead waiter got nothing


def test_lock_never_grants_a_waiter_the_kernel_killed(app):
    """30 trials: two waiters queue, the first is SIGKILLed and at once the
    holder releases.  The grant goes to the second: never to the dead one,
    whose DOWN may not have arrived yet (the kernel knows of the kill at
    once; /proc shows a zombie only milliseconds later)."""
    me = otp.self()
    for _ in range(30):
        holder = otp.spawn(lock_holder, me, "killed-waiter")
        _, acquirer, grant = recv_tagged("acquired")
        assert acquirer == holder
        doomed = otp.spawn(lock_waiter, me, "killed-waiter", "doomed")
        coordination.get_lock_info("killed-waiter", min_waiting=1)
        heir = otp.spawn(lock_waiter, me, "killed-waiter", "heir")
        coordination.get_lock_info("killed-waiter", min_waiting=2)
        os.kill(doomed.ospid, signal.SIGKILL)
        otp.send(holder, "release")
        assert recv_tagged("got") == ("got", "heir", grant + 1)  # no grant number went to the dead waiter
        assert recv_tagged("released") == ("released", holder)
        down_of(otp.monitor(heir))


def test_counter_increments_and_compare_and_set(app):
    me = otp.self()
    workers = [otp.spawn(counter_incrementer, me, "hits", 25) for _ in range(4)]
    for _ in workers:
        recv_tagged("done")
    assert coordination.get_counter_value("hits") == 100
    assert coordination.compare_and_set_counter("hits", 99, 0) is False
    assert coordination.compare_and_set_counter("hits", 100, 7) is True
    assert coordination.increment_counter("hits", 3) == 10
    assert coordination.reset_counter("hits") == 10 and coordination.get_counter_value("hits") == 0
    assert coordination.get_counter_value("never-created") == 0
    # read-modify-write made safe by the lock
    for _ in range(3):
        otp.spawn(locked_increments, me, "rmw-lock", "rmw", 10)
    for _ in range(3):
        recv_tagged("done")
    assert coordination.get_counter_value("rmw") == 30
    coordination.stop_primitive("counter", "rmw")
    assert coordination.get_counter_value("rmw") == 0
    with pytest.raises(coordination.UnknownPrimitive):
        coordination.stop_primitive("counter", "rmw")
    with pytest.raises(coordination.InvalidParameter):
        coordination.increment_counter("hits", "one")


def test_barrier_releases_live_parties_only(app):
    me = otp.self()
    coordination.create_barrier("b", 3)
    parties = [otp.spawn(barrier_party, me, "b") for _ in range(2)]
    coordination.get_barrier_info("b", min_waiting=2)
    assert coordination.arrive("b", timeout=5) == 0
    assert sorted(recv_tagged("released")[1:] for _ in parties) == sorted((p, 0) for p in parties)
    assert coordination.get_barrier_info("b") == {"parties": 3, "waiting": 0, "generation": 1}
    # the rule: a party that dies while waiting is removed and does not count
    doomed = otp.spawn(barrier_party, me, "b")
    coordination.get_barrier_info("b", min_waiting=1)
    otp.exit(doomed, "kill")
    down_of(otp.monitor(doomed))
    survivor = otp.spawn(barrier_party, me, "b")
    with pytest.raises(coordination.BarrierTimeout) as info:
        coordination.arrive("b", timeout=0.3)  # only the survivor and us: not 3 live parties
    assert info.value.waiting == 2
    late = otp.spawn(barrier_party, me, "b")
    coordination.get_barrier_info("b", min_waiting=2)
    assert coordination.arrive("b", timeout=5) == 1
    assert sorted(recv_tagged("released")[1:] for _ in range(2)) == sorted([(survivor, 1), (late, 1)])
    with pytest.raises(coordination.UnknownPrimitive):
        coordination.arrive("no-such-barrier", timeout=1)


def test_barrier_never_counts_a_party_the_kernel_killed(app):
    """30 trials: a party waits and is SIGKILLed; at once two more arrive.
    They are released together: neither is released with the dead party,
    whose DOWN may not have arrived when the second arrival is counted."""
    me = otp.self()
    coordination.create_barrier("killed-party", 2)
    for trial in range(30):
        doomed = otp.spawn(barrier_party, me, "killed-party")
        coordination.get_barrier_info("killed-party", min_waiting=1)
        os.kill(doomed.ospid, signal.SIGKILL)
        partner = otp.spawn(barrier_party, me, "killed-party")
        assert coordination.arrive("killed-party", timeout=10) == trial
        assert recv_tagged("released") == ("released", partner, trial)


def test_leader_election_with_terms(app):
    start_agents(
        {"e1": {"priority": 3}, "e2": {"priority": 2}, "e3": {"priority": 2}, "shy": {"priority": None}},
        restart="temporary",
    )
    mabeam.subscribe(coordination.election_topic("g"))
    pid = coordination.start_election("g", ["e3", "e2", "e1", "shy", "absent"])
    assert pid in [c.pid for c in otp.supervisor.which_children(COORDINATION)]
    assert coordination.get_leader("g") == (1, "e1")
    assert recv_tagged("$mabeam_event") == ("$mabeam_event", ("mabeam.election", "g"), ("elected", 1, "e1"))
    os.kill(mabeam.whereis_agent("e1").ospid, signal.SIGKILL)  # the leader dies
    assert coordination.await_new_term("g", 1, timeout=10) == (2, "e2")  # tie 2-2: smaller id
    mabeam.stop_agent("e2")
    assert coordination.await_new_term("g", 2, timeout=10) == (3, "e3")
    info = coordination.get_election_info("g")
    assert info["history"] == [(1, "e1"), (2, "e2"), (3, "e3")] and info["leader"] == "e3"
    with pytest.raises(coordination.UnknownPrimitive):
        coordination.get_leader("no-such-group")


def test_an_election_asks_its_candidates_itself_and_keeps_answering(app):
    """No process is started per election: while a candidate holds its
    answer the election process is asking it itself, and still answers."""
    me = otp.self()
    start_agents({"slow": {"priority": 1, "hold_election": True, "notify": me}, "quick": {"priority": 0}})
    pid = coordination.start_election("held", ["slow", "quick"], timeout=30)
    assert recv_tagged("holding") == ("holding", "slow")
    assert otp.supervisor.count_children(TASKS)["active"] == 0
    info = coordination.get_election_info("held")
    assert info["electing"] and info["leader"] is None
    assert mabeam.whereis_agent("slow") in otp.process_info(pid).monitors
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    assert coordination.get_leader("held", timeout=10) == (1, "slow")


def test_election_waits_for_a_candidate_and_priority_rule(app):
    for agent_id, priority in (("p1", 1), ("p2", 5)):
        mabeam.register_agent(mabeam.AgentConfig(agent_id, CoordAgent, metadata={"priority": priority}))
    coordination.start_election("meta", ["p1", "p2"], rule="priority")
    with pytest.raises(coordination.NoLeader):
        coordination.get_leader("meta", timeout=0.3)  # nobody runs: no leader, the caller is not stuck
    mabeam.start_agent("p1")  # the election hears of it from the agent supervisor
    assert coordination.get_leader("meta", timeout=10) == (1, "p1")
    mabeam.start_agent("p2")  # a better candidate does not depose a living leader
    assert coordination.get_leader("meta") == (1, "p1")
    mabeam.stop_agent("p1")
    assert coordination.await_new_term("meta", 1, timeout=10) == (2, "p2")


def test_vector_clocks_are_reexported():
    a = coordination.increment_clock(coordination.new_vector_clock(), "n1")
    b = coordination.increment_clock(a, "n2")
    c = coordination.increment_clock(a, "n3")
    assert coordination.compare_clocks(a, b) is coordination.Ordering.BEFORE
    assert coordination.concurrent(b, c) and coordination.happened_before(a, c)
    assert coordination.merge_clocks(b, c) == {"n1": 1, "n2": 1, "n3": 1}
    with pytest.raises(coordination.InvalidClock):
        coordination.increment_clock({}, "")


def test_nothing_lingers_after_primitives_stop(app):
    coordination.create_lock("x")
    coordination.create_barrier("y", 2)
    coordination.create_counter("z")
    ref = otp.monitor(otp.whereis(("mabeam.lock", "x")))
    coordination.stop_primitive("lock", "x")
    assert down_of(ref).reason == "shutdown"
    coordination.stop_primitive("barrier", "y")
    coordination.stop_primitive("counter", "z")
    assert otp.supervisor.count_children(COORDINATION)["active"] == 0
