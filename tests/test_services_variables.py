"""Universal variables: CAS, bounded history, replica reads, monitored
subscribers, consensus updates decided by real votes."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, recv, recv_tagged
from service_agents import Voter, call_and_report, subscribe_and_forward

import mabeam
import otp
from mabeam import services as S


def voters(*votes, **args):
    ids = []
    for i, vote in enumerate(votes):
        agent_id = f"v{i}"
        mabeam.register_agent(mabeam.AgentConfig(agent_id, Voter, args={"vote": vote, **args}))
        mabeam.start_agent(agent_id)
        ids.append(agent_id)
    return ids


def test_last_write_wins_and_cas(app):
    assert S.register_variable("rate", 0.1) == 1
    with pytest.raises(S.VariableExists):
        S.register_variable("rate", 0.2)
    assert S.get_variable("rate") == (0.1, 1)
    assert S.update_variable("rate", 0.2, "tuner", expected_version=1) == 2
    with pytest.raises(S.VersionConflict) as info:
        S.update_variable("rate", 0.3, "other", expected_version=1)
    assert (info.value.expected, info.value.current) == (1, 2)
    assert S.get_variable("rate") == (0.2, 2)  # the stale write changed nothing
    assert S.update_variable("rate", 0.4, "blind") == 3  # no expected version: last write wins
    info = S.variable_info("rate")
    assert info["version"] == 3 and info["modifier"] == "blind" and info["conflict_resolution"] == "last_write_wins"
    with pytest.raises(S.VariableNotFound):
        S.get_variable("nope")
    with pytest.raises(S.VariableNotFound):
        S.update_variable("nope", 1)
    assert "rate" in S.list_variables()
    assert S.delete_variable("rate") is True
    with pytest.raises(S.VariableNotFound):
        S.get_variable("rate")


def test_history_is_bounded(app):
    S.register_variable("h", 0, history_limit=3)
    for i in range(1, 6):
        S.update_variable("h", i, f"m{i}")
    history = S.variable_history("h")
    assert [(e.version, e.value, e.modifier) for e in history] == [(4, 3, "m3"), (5, 4, "m4"), (6, 5, "m5")]


def test_reads_do_not_go_through_the_server(app):
    S.register_variable("x", "a")
    for _ in range(20):  # enough lookups for this process to keep a replica
        assert S.get_variable("x") == ("a", 1)
    assert S.update_variable("x", "b") == 2
    assert S.get_variable("x") == ("b", 2)  # read-your-writes
    server = otp.whereis(S.VARIABLES)
    os.kill(server.ospid, signal.SIGSTOP)  # the owner cannot answer anything now
    try:
        assert S.get_variable("x") == ("b", 2)
    finally:
        os.kill(server.ospid, signal.SIGCONT)
    assert S.update_variable("x", "c") == 3


def test_subscribers_are_notified_and_monitored(app):
    S.register_variable("s", 1)
    assert S.subscribe_variable("s") == (1, 1)
    me = otp.self()
    other = otp.spawn(subscribe_and_forward, me, "s")
    recv(lambda m: m == ("subscribed", other))
    assert S.variable_info("s")["subscribers"] == 2
    S.update_variable("s", 2, "w")
    assert recv_tagged("$variable") == ("$variable", "s", 2, 2)
    assert recv_tagged("forwarded")[1] == ("$variable", "s", 2, 2)
    ref = otp.monitor(other)
    otp.exit(other, "kill")
    down_of(ref)
    assert S.variable_info("s")["subscribers"] == 1  # the dead one is dropped
    S.unsubscribe_variable("s")
    assert S.variable_info("s")["subscribers"] == 0
    S.update_variable("s", 3, "w")
    S.subscribe_variable("s")
    S.delete_variable("s")
    assert recv_tagged("$variable") == ("$variable", "s", None, None)


def test_consensus_update_approved_by_majority(app):
    ids = voters("approve", "approve", "reject")
    S.register_variable("policy", "old", "consensus", voters=ids)
    assert S.update_variable("policy", "new", "planner") == 2
    assert S.get_variable("policy") == ("new", 2)
    assert S.variable_info("policy")["modifier"] == "planner"


def test_consensus_update_rejected_by_majority(app):
    ids = voters("reject", "approve", "reject")
    S.register_variable("policy", "old", "consensus", voters=ids)
    with pytest.raises(S.UpdateRejected) as info:
        S.update_variable("policy", "new", "planner")
    assert info.value.votes == {"v0": "reject", "v1": "approve", "v2": "reject"}
    assert S.get_variable("policy") == ("old", 1)


def test_consensus_votes_see_the_proposal_and_absent_voters_count_against(app):
    ids = voters("even", "even") + ["ghost"]  # ghost is not running: no vote
    S.register_variable("n", 0, "consensus", voters=ids)
    assert S.update_variable("n", 2, "me") == 2  # two of three approve
    with pytest.raises(S.UpdateRejected) as info:
        S.update_variable("n", 3, "me")
    assert info.value.votes == {"v0": "reject", "v1": "reject", "ghost": None}
    with pytest.raises(S.VersionConflict):  # checked before any vote
        S.update_variable("n", 4, "me", expected_version=1)


def test_a_vote_in_progress_does_not_block_the_server(app):
    me = otp.self()
    ids = voters("approve", "approve", notify=me, hold=True)
    S.register_variable("slow", 0, "consensus", voters=ids)
    S.register_variable("fast", 0)
    otp.spawn(call_and_report, me, S.update_variable, "slow", 1, "spawned")
    for _ in ids:
        recv(lambda m: m[0] == "voting")  # every voter is inside handle_vote, held
    assert S.update_variable("fast", 1) == 2  # the server answers meanwhile
    assert S.variable_info("slow")["pending"] == 1
    # a second update of the voting variable waits its turn and is then checked
    otp.spawn(call_and_report, me, S.update_variable, "slow", 9, "late", 1)
    for agent_id in ids:
        otp.send(mabeam.agent_pid(agent_id), ("release",))
    assert recv(lambda m: m[0] in ("result", "raised") and m[1] == 2) == ("result", 2)
    late = recv(lambda m: m[0] in ("result", "raised"))
    assert late[0] == "raised" and isinstance(late[1], S.VersionConflict) and late[1].current == 2
    assert S.get_variable("slow") == (1, 2)
