"""Asynchronous requests: otp.send_request, receive_response,
wait_response, check_response and request id collections (OTP 25's
gen_server:send_request/2 and friends)."""

from __future__ import annotations

import pytest
from helpers import nothing_matching

import otp


class Gate(otp.GenServer):
    """Answers 'wait' calls only when it gets the message 'open'."""

    def init(self, _):
        return []

    def handle_call(self, request, from_, waiting):
        if request == "wait":
            return otp.NoReply([*waiting, from_])
        if request == "crash":
            raise RuntimeError("crash in handle_call")
        return otp.Reply(request, waiting)

    def handle_info(self, msg, waiting):
        if msg == "open":
            for caller in waiting:
                otp.reply(caller, "opened")
            return otp.NoReply([])
        return otp.NoReply(waiting)


class Relay(otp.GenServer):
    """Serves ('ask', server, request) by an asynchronous request of its own,
    answered from handle_info with check_response."""

    def init(self, _):
        return {}

    def handle_call(self, request, from_, pending):
        _, server, inner = request
        req = otp.send_request(server, inner)
        return otp.NoReply({**pending, req: from_})

    def handle_info(self, msg, pending):
        for req, caller in pending.items():
            try:
                answer = otp.check_response(msg, req)
            except otp.CalleeExit as exc:
                answer = ("failed", exc.reason)
            if answer is not otp.NO_REPLY:
                otp.reply(caller, answer)
                return otp.NoReply({r: c for r, c in pending.items() if r != req})
        return otp.NoReply(pending)


def test_send_request_then_receive_response(node):
    """gen_server:send_request/2 and receive_response/2: the call goes out
    at once, its reply is taken later; several may be in flight."""
    server = Gate.start_link(None)
    first = otp.send_request(server, "one")
    second = otp.send_request(server, "two")
    assert otp.receive_response(second) == "two"
    assert otp.receive_response(first) == "one"
    assert nothing_matching(lambda m: True, timeout=0)  # no monitor or reply left behind
    with pytest.raises(ValueError):
        otp.receive_response(first)  # answered already
    otp.stop(server)


def test_receive_response_when_the_server_dies(node):
    """receive_response/2 returns {error, {Reason, ServerRef}} when the
    server exits before replying (here CalleeExit with the reason, as
    otp.call), and noproc for a server that does not exist."""
    otp.trap_exit(True)
    server = Gate.start_link(None)
    req = otp.send_request(server, "crash")
    with pytest.raises(otp.CalleeExit) as info:
        otp.receive_response(req)
    assert isinstance(info.value.reason, otp.Crash)
    assert info.value.server == server and info.value.request == "crash"
    otp.receive(10, lambda m: isinstance(m, otp.EXIT) and m.pid == server)
    with pytest.raises(otp.NoProc):
        otp.receive_response(otp.send_request(server, "x"))
    with pytest.raises(otp.NoProc):
        otp.receive_response(otp.send_request("nobody-holds-this-name", "x"))


def test_receive_response_timeout_abandons_the_request(node):
    """receive_response/2 with a timeout: timeout, and the request is
    abandoned (the alias is deactivated): the late reply never shows up as
    a message, nor does the monitor's DOWN."""
    server = Gate.start_link(None)
    req = otp.send_request(server, "wait")
    with pytest.raises(otp.CallTimeout):
        otp.receive_response(req, timeout=0.1)
    otp.send(server, "open")  # the server replies now, to nobody
    assert otp.call(server, "sync") == "sync"  # its reply went out before this one
    with pytest.raises(otp.Timeout):
        otp.receive(timeout=0)
    otp.stop(server)
    assert nothing_matching(lambda m: True, timeout=0)


def test_wait_response_timeout_keeps_the_request(node):
    """gen_server:wait_response/2: at timeout the request stays active and
    its reply can still be waited for."""
    server = Gate.start_link(None)
    req = otp.send_request(server, "wait")
    with pytest.raises(otp.Timeout) as info:
        otp.wait_response(req, timeout=0.1)
    assert not isinstance(info.value, otp.CallTimeout)
    otp.send(server, "open")
    assert otp.wait_response(req) == "opened"
    otp.stop(server)


def test_check_response_on_messages_received_by_hand(node):
    """gen_server:check_response/2: a message that is the reply gives the
    reply, any other message no_reply (NO_REPLY here), and the monitor's
    DOWN the server's exit."""
    otp.trap_exit(True)
    server = Gate.start_link(None)
    req = otp.send_request(server, "ok")
    otp.send(otp.self(), "unrelated")
    assert otp.check_response(otp.receive(10, lambda m: m == "unrelated"), req) is otp.NO_REPLY
    assert otp.check_response(otp.receive(10), req) == "ok"
    failing = otp.send_request(server, "crash")
    msg = otp.receive(10, lambda m: isinstance(m, otp.DOWN))
    with pytest.raises(otp.CalleeExit):
        otp.check_response(msg, failing)


def test_check_response_in_a_gen_server(node):
    """check_response/2 as OTP meant it: a gen_server that makes requests
    of its own takes their replies in handle_info, without blocking."""
    gate = Gate.start_link(None)
    relay = Relay.start_link(None)
    pending = otp.send_request(relay, ("ask", gate, "wait"))
    assert otp.call(relay, ("ask", gate, "direct")) == "direct"  # the relay is not blocked
    otp.send(gate, "open")
    assert otp.receive_response(pending) == "opened"
    otp.stop(gate)
    otp.stop(relay)


def test_reply_from_another_process_answers_a_request(node):
    """gen_server:reply/2 from a process other than the server answers an
    asynchronous request too (the reply goes to the alias)."""
    server = Delegating.start_link(None)
    assert otp.receive_response(otp.send_request(server, "work")) == ("done by", "worker")
    otp.stop(server)


class Delegating(otp.GenServer):
    def handle_call(self, request, from_, state):
        otp.spawn(_answer_for, from_)
        return otp.NoReply(state)


def _answer_for(caller) -> None:
    otp.reply(caller, ("done by", "worker"))


def test_receive_any_response_takes_answers_in_arrival_order(node):
    """receive_response/3 on a request id collection (reqids_new/0,
    reqids_add/3, reqids_size/1): the next answer of any member, with its
    label and the collection without it, in the order the answers arrived;
    an empty collection is no_request."""
    gates = {label: Gate.start_link(None) for label in "abc"}
    collection: otp.RequestIdCollection[str] = otp.RequestIdCollection()
    for label, gate in gates.items():
        collection.add(otp.send_request(gate, "wait"), label)
    assert len(collection) == 3
    for label in "cab":  # opened in this order; each answer is in before the next gate opens
        otp.send(gates[label], "open")
        assert otp.call(gates[label], "sync") == "sync"
    answers = []
    while len(collection):
        reply, label, collection = otp.receive_any_response(collection, timeout=5)
        answers.append((reply, label))
    assert answers == [("opened", "c"), ("opened", "a"), ("opened", "b")]
    with pytest.raises(otp.NoRequests):
        otp.receive_any_response(collection)
    for gate in gates.values():
        otp.stop(gate)


def test_receive_any_response_one_at_a_time(node):
    """receive_response/3 waits for the *next* answer: a slow member does
    not hold back one that answered."""
    slow, fast = Gate.start_link(None), Gate.start_link(None)
    collection: otp.RequestIdCollection[str] = otp.RequestIdCollection()
    collection.add(otp.send_request(slow, "wait"), "slow")
    collection.add(otp.send_request(fast, "now"), "fast")
    assert otp.receive_any_response(collection)[:2] == ("now", "fast")
    otp.send(slow, "open")
    assert otp.receive_any_response(collection)[:2] == ("opened", "slow")
    otp.stop(slow)
    otp.stop(fast)


def test_receive_any_response_member_failure_and_timeout(node):
    """receive_response/3: a member whose server exits gives {error,
    {Reason, ServerRef}} with its label (here CalleeExit with .label); at
    timeout every member is abandoned, and no late answer shows up."""
    otp.trap_exit(True)
    failing, gate = Gate.start_link(None), Gate.start_link(None)
    collection: otp.RequestIdCollection[str] = otp.RequestIdCollection()
    collection.add(otp.send_request(failing, "crash"), "failing")
    collection.add(otp.send_request(gate, "wait"), "waiting")
    with pytest.raises(otp.CalleeExit) as info:
        otp.receive_any_response(collection)
    assert info.value.label == "failing"
    assert len(collection) == 1
    with pytest.raises(otp.CallTimeout):
        otp.receive_any_response(collection, timeout=0.1)
    assert len(collection) == 0
    otp.send(gate, "open")
    assert otp.call(gate, "sync") == "sync"
    assert nothing_matching(lambda m: not isinstance(m, otp.EXIT), timeout=0)
    otp.stop(gate)


def test_wait_and_check_any_response(node):
    """wait_response/3 keeps every member at timeout; check_response/3
    tells whether a message answers a member of the collection."""
    gate = Gate.start_link(None)
    collection: otp.RequestIdCollection[int] = otp.RequestIdCollection()
    collection.add(otp.send_request(gate, "wait"), 1)
    with pytest.raises(otp.Timeout):
        otp.wait_any_response(collection, timeout=0.1)
    assert len(collection) == 1
    otp.send(gate, "open")
    otp.send(otp.self(), "unrelated")
    assert otp.check_any_response(otp.receive(10, lambda m: m == "unrelated"), collection) is otp.NO_REPLY
    reply, label, rest = otp.check_any_response(otp.receive(10), collection)
    assert (reply, label, len(rest)) == ("opened", 1, 0)
    otp.stop(gate)
