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
from mabeam import variables as V
from mabeam._errors import MabeamError


def voters(*votes, **args):
    ids = []
    for i, vote in enumerate(votes):
        agent_id = f"v{i}"
        mabeam.register_agent(mabeam.AgentConfig(agent_id, Voter, args={"vote": vote, **args}))
        mabeam.start_agent(agent_id)
        ids.append(agent_id)
    return ids


def test_errors_are_mabeam_errors_and_builtins():
    assert issubclass(V.VariableError, MabeamError)
    assert issubclass(V.VariableNotFound, LookupError) and issubclass(V.InvalidVariable, ValueError)
    conflict = V.VersionConflict("x", 1, 2)
    assert (conflict.name, conflict.expected, conflict.current) == ("x", 1, 2)


def test_bad_registrations_are_refused(app):
    with pytest.raises(ValueError):
        V.register_variable("m", 0, "first_write_wins")
    with pytest.raises(V.InvalidVariable) as info:
        V.register_variable("c", 0, "consensus")
    assert info.value.name == "c"
    assert V.list_variables() == []


def test_last_write_wins_and_cas(app):
    assert V.register_variable("rate", 0.1) == 1
    with pytest.raises(V.VariableExists):
        V.register_variable("rate", 0.2)
    assert V.get_variable("rate") == (0.1, 1)
    assert V.update_variable("rate", 0.2, "tuner", expected_version=1) == 2
    with pytest.raises(V.VersionConflict) as info:
        V.update_variable("rate", 0.3, "other", expected_version=1)
    assert (info.value.expected, info.value.current) == (1, 2)
    assert V.get_variable("rate") == (0.2, 2)  # the stale write changed nothing
    assert V.update_variable("rate", 0.4, "blind") == 3  # no expected version: last write wins
    info = V.get_variable_info("rate")
    assert info.version == 3 and info.modifier == "blind" and info.conflict_resolution == "last_write_wins"
    with pytest.raises(V.VariableNotFound):
        V.get_variable("nope")
    with pytest.raises(V.VariableNotFound):
        V.update_variable("nope", 1)
    assert "rate" in V.list_variables()
    assert V.delete_variable("rate") is True
    with pytest.raises(V.VariableNotFound):
        V.get_variable("rate")


def test_history_is_bounded(app):
    V.register_variable("h", 0, history_limit=3)
    for i in range(1, 6):
        V.update_variable("h", i, f"m{i}")
    history = V.get_variable_history("h")
    assert [(e.version, e.value, e.modifier) for e in history] == [(4, 3, "m3"), (5, 4, "m4"), (6, 5, "m5")]


def test_reads_do_not_go_through_the_server(app):
    V.register_variable("x", "a")
    for _ in range(20):  # enough lookups for this process to keep a replica
        assert V.get_variable("x") == ("a", 1)
    assert V.update_variable("x", "b") == 2
    assert V.get_variable("x") == ("b", 2)  # read-your-writes
    server = otp.whereis(V.VARIABLES)
    os.kill(server.ospid, signal.SIGSTOP)  # the owner cannot answer anything now
    try:
        assert V.get_variable("x") == ("b", 2)
    finally:
        os.kill(server.ospid, signal.SIGCONT)
    assert V.update_variable("x", "c") == 3


def test_subscribers_are_notified_and_monitored(app):
    V.register_variable("s", 1)
    assert V.subscribe_variable("s") == (1, 1)
    me = otp.self()
    other = otp.spawn(subscribe_and_forward, me, "s")
    recv(lambda m: m == ("subscribed", other))
    assert V.get_variable_info("s").subscribers == 2
    V.update_variable("s", 2, "w")
    assert recv_tagged("$variable") == ("$variable", "s", 2, 2)
    assert recv_tagged("forwarded")[1] == ("$variable", "s", 2, 2)
    ref = otp.monitor(other)
    otp.exit(other, "kill")
    down_of(ref)
    assert V.get_variable_info("s").subscribers == 1  # the dead one is dropped
    V.unsubscribe_variable("s")
    assert V.get_variable_info("s").subscribers == 0
    V.update_variable("s", 3, "w")
    V.subscribe_variable("s")
    V.delete_variable("s")
    assert recv_tagged("$variable") == ("$variable", "s", None, None)


def test_consensus_update_approved_by_majority(app):
    ids = voters("approve", "approve", "reject")
    V.register_variable("policy", "old", "consensus", voters=ids)
    assert V.update_variable("policy", "new", "planner") == 2
    assert V.get_variable("policy") == ("new", 2)
    assert V.get_variable_info("policy").modifier == "planner"


def test_consensus_update_rejected_by_majority(app):
    ids = voters("reject", "approve", "reject")
    V.register_variable("policy", "old", "consensus", voters=ids)
    with pytest.raises(V.UpdateRejected) as info:
        V.update_variable("policy", "new", "planner")
    assert info.value.votes == {"v0": "reject", "v1": "approve", "v2": "reject"}
    assert V.get_variable("policy") == ("old", 1)


def test_consensus_votes_see_the_proposal_and_absent_voters_count_against(app):
    ids = voters("even", "even") + ["ghost"]  # ghost is not running: no vote
    V.register_variable("n", 0, "consensus", voters=ids)
    assert V.update_variable("n", 2, "me") == 2  # two of three approve
    with pytest.raises(V.UpdateRejected) as info:
        V.update_variable("n", 3, "me")
    assert info.value.votes == {"v0": "reject", "v1": "reject", "ghost": None}
    with pytest.raises(V.VersionConflict):  # checked before any vote
        V.update_variable("n", 4, "me", expected_version=1)


def test_a_vote_in_progress_does_not_block_the_server(app):
    me = otp.self()
    ids = voters("approve", "approve", notify=me, hold=True)
    V.register_variable("slow", 0, "consensus", voters=ids)
    V.register_variable("fast", 0)
    otp.spawn(call_and_report, me, V.update_variable, "slow", 1, "spawned")
    for _ in ids:
        recv(lambda m: m[0] == "voting")  # every voter is inside handle_vote, held
    assert V.update_variable("fast", 1) == 2  # the server answers meanwhile
    assert V.get_variable_info("slow").pending == 1
    # a second update of the voting variable waits its turn and is then checked
    otp.spawn(call_and_report, me, V.update_variable, "slow", 9, "late", 1)
    for agent_id in ids:
        otp.send(mabeam.whereis_agent(agent_id), ("release",))
    assert recv(lambda m: m[0] in ("result", "raised") and m[1] == 2) == ("result", 2)
    late = recv(lambda m: m[0] in ("result", "raised"))
    assert late[0] == "raised" and isinstance(late[1], V.VersionConflict) and late[1].current == 2
    assert V.get_variable("slow") == (1, 2)
