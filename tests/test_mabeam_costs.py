"""What a MABEAM operation costs the processes that serve it: work that
the kernel already does for them (a look at a process in ``/proc`` that a
call tells as well) is not done again per operation; and the behaviour
such a saving must keep.  (A session host still looks at each agent it
asks: a reused monitor would report an agent that died before it was asked
with its exit reason, not ``'not_running'``.)"""

from __future__ import annotations

from coordination_agents import start_agents

import otp
from mabeam import coordination
from mabeam.coordination._agent_calls import AgentRequest, NoAnswer
from mabeam.coordination._host_asks import AgentReply, Asker
from mabeam.coordination._session import HOSTS


def _settle(asker: Asker, step) -> list:
    """Take the host's messages (answers, DOWNs) until ``step`` is settled."""
    while step.left:
        msg = otp.receive(10, lambda m: type(m) is AgentReply or type(m) is otp.DOWN)
        assert asker.take(msg) is not None
    return step.outcomes


def _forbid_liveness_reads(monkeypatch) -> None:
    def is_alive(pid):
        raise AssertionError(f"is_alive({pid!r}): a read of /proc per request")

    monkeypatch.setattr(otp, "is_alive", is_alive)


def test_an_agent_killed_before_it_is_asked_is_not_running(app):
    """Gone before the host asks it (its name may still be registered for a
    moment): ``'not_running'``, from the monitor's ``'noproc'``."""
    pid = start_agents({"k": {}}, restart="temporary")["k"]
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert otp.receive(10, lambda m: type(m) is otp.DOWN and m.ref == ref).reason == "killed"
    asker = Asker()
    step = asker.ask(None, [AgentRequest("k", "vote", "x")], 10)
    assert _settle(asker, step) == [NoAnswer("not_running")]


def test_a_blocking_session_looks_at_no_host_process_and_skips_a_dead_host(app, monkeypatch):
    """``run_consensus`` costs its caller no ``/proc`` read of the host: the
    call refuses a host that has exited (SIGKILLed, its name perhaps still
    registered) with ``NoProc`` by itself, and the session goes to the next."""
    start_agents({"p": {}, "q": {}})
    probe = coordination.run_consensus_async(["p", "q"], "x", timeout=5)
    host = probe.host  # this caller's partition's host
    assert probe.result(20).decision == "approve"
    _forbid_liveness_reads(monkeypatch)
    assert coordination.run_consensus(["p", "q"], "y", timeout=5).decision == "approve"
    otp.sys.suspend(HOSTS)  # the killed host stays down until resumed
    try:
        ref = otp.monitor(host)
        otp.exit(host, "kill")
        assert otp.receive(10, lambda m: type(m) is otp.DOWN and m.ref == ref).reason == "killed"
        results = [coordination.run_consensus(["p", "q"], i, timeout=5) for i in range(4)]
        assert all(r.decision == "approve" and r.votes == {"p": "approve", "q": "approve"} for r in results)
    finally:
        otp.sys.resume(HOSTS)
