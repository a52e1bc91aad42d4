"""Property-based fault injection for the process kernel (Hypothesis).

* random message sequences keep their order through send and selective
  receive;
* a process killed (or exiting) at a random point delivers a gap-free prefix
  of what it sent, then exactly one DOWN and one EXIT with the right reason;
* a state machine spawns, links, monitors, messages, kills and signals
  random puppets and checks after every step that the root saw exactly the
  EXIT, DOWN and forwarded messages OTP's rules predict, and that the set of
  live processes is the one the model says.
"""

from __future__ import annotations

import os
import signal

from helpers import down_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from procs import echo, puppet

import otp

TIMEOUT = 10.0

payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(max_examples=25, **SETTINGS)
@given(msgs=st.lists(payloads, max_size=30), pick=st.integers(min_value=2, max_value=5))
def test_random_messages_keep_order_through_selective_receive(node, msgs, pick):
    pid = otp.spawn(echo)
    me = otp.self()
    for i, m in enumerate(msgs):
        otp.send(pid, (me, (i, m)))
    selected = [otp.receive(TIMEOUT, lambda r: r[1][0] % pick == 0) for i in range(len(msgs)) if i % pick == 0]
    rest = [otp.receive(TIMEOUT) for i in range(len(msgs)) if i % pick != 0]
    assert [r[1] for r in selected] == [(i, m) for i, m in enumerate(msgs) if i % pick == 0]
    assert [r[1] for r in rest] == [(i, m) for i, m in enumerate(msgs) if i % pick != 0]
    otp.send(pid, "stop")


def _sender(parent: otp.Pid, n: int, reason) -> None:
    me = otp.self()
    for i in range(n):
        otp.send(parent, ("n", me, i))
    if reason == "hang":
        otp.receive()
    raise otp.ProcessExit(reason)


@settings(max_examples=25, **SETTINGS)
@given(
    n=st.integers(min_value=0, max_value=200),
    kill_after=st.integers(min_value=0, max_value=200),
    reason=st.sampled_from(["normal", "shutdown", ("shutdown", 1), "custom", "sigkill"]),
)
def test_random_kill_points_give_a_prefix_then_one_down(node, n, kill_after, reason):
    otp.trap_exit(True)
    me = otp.self()
    pid, ref = otp.spawn_opt(_sender, (me, n, "hang" if reason == "sigkill" else reason), link=True, monitor=True)

    def ours(m) -> bool:
        return m.pid == pid if isinstance(m, (otp.DOWN, otp.EXIT)) else m[1] == pid

    got = []
    downs, exits = [], []
    killed = False
    while not (downs and exits):
        if reason == "sigkill" and not killed and len(got) >= min(kill_after, n):
            os.kill(pid.ospid, signal.SIGKILL)
            killed = True
        m = otp.receive(TIMEOUT, ours)
        if isinstance(m, otp.DOWN):
            downs.append(m)
        elif isinstance(m, otp.EXIT):
            exits.append(m)
        else:
            assert not downs and not exits or reason == "sigkill", "a message came after the exit of a clean exit"
            got.append(m[2])
    assert got == list(range(len(got))), "gap or reordering"
    expected = "killed" if reason == "sigkill" else reason
    assert downs == [otp.DOWN(ref, pid, expected)]
    assert exits == [otp.EXIT(pid, expected)]
    if reason != "sigkill":
        assert len(got) == n, "messages sent before a clean exit were lost"
    else:
        assert len(got) >= min(kill_after, n)
    try:
        extra = otp.receive(0.05, ours)
    except otp.Timeout:
        extra = None
    assert extra is None or (reason == "sigkill" and extra[0] == "n"), f"after the exit: {extra!r}"


REASONS = st.sampled_from(["normal", "shutdown", ("shutdown", "x"), "boom", "kill"])


class KernelMachine(RuleBasedStateMachine):
    """Model of puppets, their links and the root's monitors and links."""

    def __init__(self):
        super().__init__()
        self.node = otp.Node()
        self.node.start()
        otp.trap_exit(True)
        self.me = otp.self()
        self.alive: dict[otp.Pid, bool] = {}  # pid -> traps exits
        self.root_links: set[otp.Pid] = set()
        self.monitors: dict[otp.Ref, otp.Pid] = {}
        # Collections keep insertion order (never sorted by pid: uids are
        # random, so sorting would make replays of an example diverge).
        self.links: list[frozenset] = []  # puppet-puppet links
        self.expected: list = []  # messages the root must receive
        self.counter = 0

    def teardown(self):
        try:
            for pid in list(self.alive):
                ref = otp.monitor(pid)
                otp.exit(pid, "kill")
                down_of(ref, TIMEOUT)
        finally:
            self.node.stop()

    # ------------------------------------------------------------ model

    def _die(self, pid, reason):
        """Model the exit of ``pid`` with ``reason`` and its cascade."""
        if pid not in self.alive:
            return
        del self.alive[pid]
        for ref, target in list(self.monitors.items()):
            if target == pid:
                self.expected.append(otp.DOWN(ref, pid, reason))
                del self.monitors[ref]
        if pid in self.root_links:
            self.root_links.discard(pid)
            self.expected.append(otp.EXIT(pid, reason))
        for link in [lk for lk in self.links if pid in lk]:
            if link not in self.links:  # removed by a cascade meanwhile
                continue
            self.links.remove(link)
            (other,) = link - {pid}
            if other not in self.alive:
                continue
            if self.alive[other]:
                self.expected.append(("fwd", other, otp.EXIT(pid, reason)))
            elif reason != "normal":
                self._die(other, reason)

    def _collect(self):
        for want in list(self.expected):
            got = otp.receive(TIMEOUT, lambda m, w=want: m == w)
            assert got == want
        self.expected.clear()
        try:
            stray = otp.receive(0)
        except otp.Timeout:
            stray = None
        assert stray is None, f"unexpected message {stray!r}"

    def _pick(self, data):
        return data.draw(st.sampled_from(list(self.alive)))

    # ------------------------------------------------------------ rules

    @rule(trap=st.booleans(), link=st.booleans())
    def spawn(self, trap, link):
        if len(self.alive) >= 6:
            return
        pid = otp.spawn_opt(puppet, (self.me, trap), link=link)
        assert otp.receive(TIMEOUT, lambda m: m == ("ready", pid)) == ("ready", pid)
        self.alive[pid] = trap
        if link:
            self.root_links.add(pid)

    @precondition(lambda self: self.alive)
    @rule(data=st.data())
    def monitor(self, data):
        pid = self._pick(data)
        self.monitors[otp.monitor(pid)] = pid

    @precondition(lambda self: self.monitors)
    @rule(data=st.data(), flush=st.booleans())
    def demonitor(self, data, flush):
        ref = data.draw(st.sampled_from(list(self.monitors)))
        otp.demonitor(ref, flush=flush)
        del self.monitors[ref]

    @precondition(lambda self: self.alive)
    @rule(data=st.data(), payload=payloads)
    def message(self, data, payload):
        pid = self._pick(data)
        self.counter += 1
        otp.send(pid, ("cmd", "echo", (self.counter, payload)))
        self.expected.append(("echo", pid, (self.counter, payload)))
        self._collect()

    @precondition(lambda self: len(self.alive) >= 2)
    @rule(data=st.data())
    def link_puppets(self, data):
        a = self._pick(data)
        b = data.draw(st.sampled_from([p for p in self.alive if p != a]))
        otp.send(a, ("cmd", "link", b))
        assert otp.receive(TIMEOUT, lambda m: m == ("linked", a, b)) == ("linked", a, b)
        if frozenset((a, b)) not in self.links:
            self.links.append(frozenset((a, b)))

    @precondition(lambda self: self.links)
    @rule(data=st.data())
    def unlink_puppets(self, data):
        link = data.draw(st.sampled_from(self.links))
        a, b = [p for p in self.alive if p in link]
        otp.send(a, ("cmd", "unlink", b))
        assert otp.receive(TIMEOUT, lambda m: m == ("unlinked", a, b)) == ("unlinked", a, b)
        self.links.remove(link)

    @precondition(lambda self: self.alive)
    @rule(data=st.data())
    def sigkill(self, data):
        pid = self._pick(data)
        os.kill(pid.ospid, signal.SIGKILL)
        self._die(pid, "killed")
        self._collect()

    @precondition(lambda self: self.alive)
    @rule(data=st.data(), reason=REASONS)
    def exits_itself(self, data, reason):
        pid = self._pick(data)
        otp.send(pid, ("cmd", "exit", reason))
        self._die(pid, reason)
        self._collect()

    @precondition(lambda self: self.alive)
    @rule(data=st.data(), reason=REASONS)
    def exit_signal(self, data, reason):
        pid = self._pick(data)
        otp.exit(pid, reason)
        if reason == "kill":
            self._die(pid, "killed")
        elif self.alive[pid]:
            self.expected.append(("fwd", pid, otp.EXIT(self.me, reason)))
        elif reason != "normal":
            self._die(pid, reason)
        self._collect()

    @precondition(lambda self: self.alive)
    @rule(data=st.data())
    def crash(self, data):
        pid = self._pick(data)
        ref = otp.monitor(pid)
        otp.send(pid, ("cmd", "crash", "injected"))
        reason = down_of(ref, TIMEOUT).reason
        assert isinstance(reason, otp.Crash) and reason.message == "injected"
        self._die(pid, reason)
        self._collect()

    @invariant()
    def live_processes_match_the_model(self):
        for pid in self.alive:
            assert otp.is_alive(pid), f"{pid!r} should be alive"


KernelMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=15, **SETTINGS)
test_kernel_state_machine = KernelMachine.TestCase
