"""PBFT among the agents' own processes: honest replicas never decide
different values (safety) and decide when at most f are faulty (liveness),
whatever the faulty ones do: stay silent, equivocate as replica or primary,
lie to the client, die mid-protocol."""

from __future__ import annotations

import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pbft_agents import (
    FAULTS,
    dying_pbft_client,
    hold_until_told,
    nothing,
    pbft_client,
    pbft_state,
    start_pbft_agents,
)

import mabeam
import otp
from mabeam._agent import PROTOCOL
from mabeam._comms import whereis_agent
from mabeam.coordination import InvalidParameter, ResultTaken, voting
from mabeam.coordination._pbft import (
    PbftQuorumUnavailable,
    PbftTimeout,
    run_pbft,
    run_pbft_async,
)
from mabeam.coordination._pbft_replicas import Replicas

TIMEOUT = 30.0  # generous: the machine is shared
VIEW = 0.4  # view timeout of the tests that need a view change


def ids_of(n, prefix="r"):
    return [f"{prefix}{i}" for i in range(n)]


def honest_decisions(ids, ref, honest):
    """Every decision the ``honest`` replicas of instance ``ref`` reported,
    ``{agent_id: [values]}``, after checking that no agent holds the
    instance any more.  A run request to each agent comes after the
    client's release (both from this process): once it is answered,
    everything the agent will ever decide for ``ref`` has been sent, and
    what it sent before its answer is in our mailbox."""
    for agent_id in ids:
        if whereis_agent(agent_id) is not None:
            assert ref not in mabeam.request(agent_id, (pbft_state, ()), timeout=10, kind="run")
    decisions: dict = {}
    while True:
        try:
            msg = otp.receive(0, lambda m: type(m) is tuple and m[0] in ("decided", "dropped") and m[2] == ref)
        except otp.Timeout:
            return decisions
        if msg[0] == "decided" and msg[1] in honest:
            decisions.setdefault(msg[1], []).append(msg[4])


def elapsed(call):
    return time.monotonic() - call.started


def check_run(ids, proposal, honest, **kw):
    call = run_pbft_async(ids, proposal, timeout=TIMEOUT, **kw)
    result = call.result()
    decisions = honest_decisions(ids, call.ref, honest)
    assert len(decisions) >= 1  # at least one of the f+1 replies was honest
    assert all(value == result.decision for values in decisions.values() for value in values), decisions
    assert result.faulty <= set(ids) - set(honest)
    return result, decisions


def test_honest_agents_decide_the_proposal_in_view_0(app):
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me} for i in ids})
    result, decisions = check_run(ids, {"deploy": "v2"}, set(ids))
    assert result.decision == {"deploy": "v2"} and result.view == 0 and result.seq == 1, result
    assert (result.n, result.f) == (4, 1) and len(result.replies) >= 2 and set(result.replies) <= set(ids)
    assert result.faulty == frozenset() and result.excluded == {}
    assert "pbft" in result.tags
    # the client's mailbox keeps nothing of the instance: late replies are dropped where they arrive
    left = []
    while True:
        try:
            left.append(otp.receive(0))
        except otp.Timeout:
            break
    assert not left


def test_agents_agree_on_a_vote_and_refuse_a_primary_that_proposes_another(app):
    """An agent agrees to its own vote: the first primary votes 'reject',
    the three others refuse its value and replace it; the next primary
    proposes 'approve', which they accept."""
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me, "vote": "reject" if i == "r0" else "approve"} for i in ids})
    result, _ = check_run(ids, "deploy?", set(ids) - {"r0"}, view_timeout=VIEW)
    assert result.decision == "approve" and result.view >= 1


def test_honest_agents_that_disagree_decide_nothing_and_the_call_fails_in_time(app):
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me, "vote": "yes" if i in ("r0", "r1") else "no"} for i in ids})
    call = run_pbft_async(ids, "deploy?", timeout=3, view_timeout=0.3)
    with pytest.raises(PbftTimeout) as info:
        call.result()
    assert info.value.replies == {} and info.value.excluded == {}
    assert isinstance(info.value, TimeoutError) and 3 <= elapsed(call) < 3 + 5
    assert honest_decisions(ids, call.ref, set(ids)) == {}  # and the replicas dropped the instance


@pytest.mark.parametrize("n", [4, 7])
def test_a_silent_primary_is_replaced(app, n):
    me = otp.self()
    ids = ids_of(n)
    start_pbft_agents({i: {"observer": me} for i in ids})
    proposal = {"faults": {"r0": "silent"}}
    result, _ = check_run(ids, proposal, set(ids) - {"r0"}, view_timeout=VIEW)
    assert result.decision == proposal and result.view >= 1 and "r0" not in result.replies


@pytest.mark.parametrize("n", [4, 7])
def test_an_equivocating_primary_cannot_make_honest_replicas_decide_different_values(app, n):
    """The primary pre-prepares the proposal to the peers of even index and
    another value to the others; honest replicas (which accept any value)
    never decide both: a view change keeps a value that may have been
    prepared, or one side decides alone."""
    me = otp.self()
    ids = ids_of(n)
    start_pbft_agents({i: {"observer": me} for i in ids})
    faults = {"r0": "equivocating_primary"} if n == 4 else {"r0": "equivocating_primary", "r1": "equivocate"}
    proposal = {"faults": faults}
    result, decisions = check_run(ids, proposal, set(ids) - set(faults), view_timeout=VIEW)
    assert result.decision in (proposal, ("equivocated", proposal))


@pytest.mark.parametrize("n", [4, 7])
def test_a_value_decided_by_one_replica_is_kept_by_the_view_change(app, n):
    """The primary pre-prepares a value of its own to 2f backups and
    commits it to one of them only: that one decides alone in view 0; the
    others never prepared enough to decide, replace the primary, and the
    new-view must carry the decided value (a fresh proposal would split
    the honest replicas)."""
    me = otp.self()
    ids = ids_of(n)
    start_pbft_agents({i: {"observer": me} for i in ids})
    proposal = {"faults": {"r0": "split_primary"}}
    result, decisions = check_run(ids, proposal, set(ids) - {"r0"}, view_timeout=VIEW)
    assert result.decision == ("split", proposal) and result.view >= 1
    assert decisions["r1"][0] == ("split", proposal)


@pytest.mark.parametrize("n", [4, 7])
def test_equivocating_replicas_do_not_stop_the_honest_ones(app, n):
    me = otp.self()
    ids = ids_of(n)
    start_pbft_agents({i: {"observer": me} for i in ids})
    faults = {"r2": "equivocate"} if n == 4 else {"r2": "equivocate", "r5": "equivocate"}
    result, _ = check_run(ids, {"faults": faults}, set(ids) - set(faults), view_timeout=VIEW)
    assert result.decision == {"faults": faults}


def test_a_silent_replica_costs_nothing(app):
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me} for i in ids})
    result, _ = check_run(ids, {"faults": {"r3": "silent"}}, {"r0", "r1", "r2"})
    assert result.view == 0 and "r3" not in result.replies


def test_a_lying_reply_is_never_accepted_alone_and_proves_its_sender_faulty(app):
    """f = 1: one forged reply cannot make the client accept (it needs f+1
    matching); a signed reply for another value than the decision is a
    proof against its sender."""
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me, "fault": "liar" if i == "r1" else None} for i in ids})
    for _ in range(3):
        result, _ = check_run(ids, "x", {"r0", "r2", "r3"})
        assert result.decision == "x" and "r1" not in result.replies
        assert result.faulty <= {"r1"}


def test_a_primary_killed_mid_pre_prepare_is_replaced(app):
    """SIGKILLed after sending its pre-prepare to one peer: that peer
    prepared alone, the others time out, the next primary decides."""
    me = otp.self()
    ids = ids_of(4)
    pids = start_pbft_agents({i: {"observer": me, "fault": "die_mid_pre_prepare" if i == "r0" else None} for i in ids})
    ref = otp.monitor(pids["r0"])
    result, _ = check_run(ids, "x", {"r1", "r2", "r3"}, view_timeout=VIEW)
    assert result.decision == "x" and result.view >= 1
    assert otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "killed"


def test_n7_with_a_replica_killed_on_its_first_prepare_and_a_silent_one(app):
    me = otp.self()
    ids = ids_of(7)
    pids = start_pbft_agents({i: {"observer": me, "fault": "die_on_prepare" if i == "r3" else None} for i in ids})
    ref = otp.monitor(pids["r3"])
    result, _ = check_run(ids, {"faults": {"r6": "silent"}}, set(ids) - {"r3", "r6"}, view_timeout=VIEW)
    assert result.decision == {"faults": {"r6": "silent"}}
    assert otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "killed"


def test_agents_not_running_count_as_faulty_and_are_listed(app):
    me = otp.self()
    start_pbft_agents({i: {"observer": me} for i in ("r1", "r2", "r3")})
    ids = ["ghost", "r1", "r2", "r3"]  # the primary of view 0 is not running
    result, _ = check_run(ids, "x", {"r1", "r2", "r3"}, view_timeout=VIEW)
    assert result.excluded == {"ghost": "not_running"} and result.view >= 1
    with pytest.raises(PbftQuorumUnavailable) as info:
        run_pbft(["ghost", "ghost2", "r1", "r2"], "x", timeout=TIMEOUT)
    assert info.value.excluded == {"ghost": "not_running", "ghost2": "not_running"}
    assert (info.value.joined, info.value.needed) == (2, 3)


def test_bad_arguments_fail_in_the_caller(app):
    with pytest.raises(voting.InsufficientAgents):
        run_pbft(["a", "b", "c"], "x", f=1)
    with pytest.raises(voting.InsufficientAgents):
        run_pbft([], "x")
    with pytest.raises(InvalidParameter):
        run_pbft(["a", "a", "b", "c"], "x")
    for bad in (0, -1, True, float("nan"), "1"):
        with pytest.raises(InvalidParameter):
            run_pbft(["a", "b", "c", "d"], "x", timeout=bad)
    with pytest.raises(InvalidParameter):
        run_pbft(["a", "b", "c", "d"], "x", f=-1)
    with pytest.raises(InvalidParameter):
        run_pbft(["a", "b", "c", "d"], "x", view_timeout=0)


def test_a_cancelled_call_releases_its_replicas(app):
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me, "vote": "yes" if i in ("r0", "r1") else "no"} for i in ids})
    call = run_pbft_async(ids, "x", timeout=TIMEOUT)
    call.cancel()
    assert honest_decisions(ids, call.ref, set(ids)) == {}
    with pytest.raises(ResultTaken):
        call.result()
    with pytest.raises(InvalidParameter):  # a proposal that cannot travel, refused before anything is sent
        run_pbft(ids, _Unpicklable(), timeout=TIMEOUT)


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("not this one")


def test_concurrent_instances_do_not_interfere_and_leave_nothing_behind(app):
    """Six instances at once from this process (two with a silent
    primary), and two from other processes: each decides its own
    proposal; afterwards no agent holds any instance."""
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me} for i in ids})
    proposals = [{"k": k, "faults": {"r0": "silent"} if k % 3 == 0 else {}} for k in range(6)]
    clients = [otp.spawn_link(pbft_client, me, ids, ("remote", k)) for k in range(2)]
    calls = [run_pbft_async(ids, p, timeout=TIMEOUT, view_timeout=VIEW) for p in proposals]
    for call, proposal in zip(calls, proposals):
        result = call.result()
        assert result.decision == proposal
        for values in honest_decisions(ids, call.ref, set(ids) - set(proposal["faults"])).values():
            assert values and all(v == proposal for v in values)
    for k in range(2):
        tag, proposal, decision = otp.receive(
            TIMEOUT, lambda m, k=k: type(m) is tuple and m[:2] == ("remote", ("remote", k))
        )
        assert decision == proposal
    for agent_id in ids:
        assert mabeam.request(agent_id, (pbft_state, ()), kind="run") == set()
    for pid in clients:
        otp.unlink(pid)


def test_replicas_drop_an_instance_whose_client_died(app):
    """A client killed after the join: the replicas keep the instance only
    until its lifetime (the client's timeout plus LINGER) is over."""
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me, "vote": "yes" if i in ("r0", "r1") else "no"} for i in ids})
    pid, mref = otp.spawn_monitor(dying_pbft_client, me, ids)
    ref = otp.receive(TIMEOUT, lambda m: type(m) is tuple and m[0] == "joined")[1]
    assert all(ref in mabeam.request(i, (pbft_state, ()), kind="run") for i in ids)
    otp.exit(pid, "kill")
    assert otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == mref).reason == "killed"
    dropped = {otp.receive(15, lambda m: type(m) is tuple and m[0] == "dropped" and m[2] == ref)[1] for _ in ids}
    assert dropped == set(ids)
    assert all(mabeam.request(i, (pbft_state, ()), kind="run") == set() for i in ids)


def test_an_agent_that_joins_after_the_window_is_released_too(app):
    """An agent too slow for the join window is left out of the instance;
    when its join answer comes later, before the result, the client
    releases it with the others (it would otherwise hold the instance for
    its whole lifetime)."""
    me = otp.self()
    ids = ids_of(4)
    start_pbft_agents({i: {"observer": me} for i in ids})
    slow = whereis_agent("r3")
    held = otp.send_request(slow, otp.Request("run", ((hold_until_told, (me,)),), {}))
    otp.receive(TIMEOUT, lambda m: m == ("holding", "r3"))
    call = run_pbft_async(ids, "x", timeout=TIMEOUT)  # returns after the join window
    otp.send(slow, "go")
    assert otp.receive_response(held, TIMEOUT) == otp.Ok("held")
    mabeam.request("r3", (nothing, ()), kind="run")  # after its join answer: that one is in
    assert call.result().decision == "x"
    assert call.ref not in mabeam.request("r3", (pbft_state, ()), kind="run")


def test_forged_protocol_messages_are_ignored(app):
    """Messages a replica did not sign, configurations and releases the
    client did not MAC, and timers nobody armed change nothing."""
    me = otp.self()
    ids = ids_of(4)
    pids = start_pbft_agents({i: {"observer": me} for i in ids})
    call = run_pbft_async(ids, "x", timeout=TIMEOUT)
    key = (me, call.ref)
    for pid in pids.values():
        for payload in (
            ("release", key, b"\0" * 32),
            ("cfg", key, pickle.dumps("nonsense"), b"\0" * 32),
            ("timer", key, b"guess", ("expire",)),
            ("msg", key, b"c", 0, b"\0" * 32, None, 1, b"\0" * 64),
            ("garbage",),
            "garbage",
        ):
            otp.send(pid, (PROTOCOL, Replicas, payload))
    result = call.result()
    assert result.decision == "x" and result.view == 0
    with pytest.raises(ResultTaken):
        call.result()


def test_safety_and_liveness_whatever_at_most_f_replicas_do(app):
    """Property: for n = 4 and 7, any f replicas with any of the faults
    (silent, equivocating as replica or primary, lying to the client): the
    call decides, and every honest replica decided that value."""
    me = otp.self()
    ids = ids_of(7)
    start_pbft_agents({i: {"observer": me} for i in ids})
    faults = st.sampled_from([f for f in FAULTS if not f.startswith("die")])

    def cases(n):
        # the first primaries are where faults matter most: drawn from twice
        where = st.one_of(st.sampled_from(ids[:2]), st.sampled_from(ids[:n]))
        return st.tuples(st.just(n), st.dictionaries(where, faults, max_size=(n - 1) // 3))

    @settings(max_examples=12, deadline=None, database=None)
    @given(st.sampled_from([4, 7]).flatmap(cases))
    def check(case):
        n, chosen = case
        members = ids[:n]
        proposal = {"faults": chosen}
        result, _ = check_run(members, proposal, set(members) - set(chosen), view_timeout=0.3)
        assert result.decision in (proposal, ("equivocated", proposal), ("split", proposal))

    check()
