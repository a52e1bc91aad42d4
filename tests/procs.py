"""Bodies of the processes the tests spawn (importable, so that every start
method can run them)."""

from __future__ import annotations

import os
import time

import otp


def wait_forever() -> None:
    otp.receive()


def echo() -> None:
    """Answer ``(sender, x)`` with ``('echo', x)``; stop on 'stop'."""
    while True:
        msg = otp.receive()
        if msg == "stop":
            return
        sender, x = msg
        otp.send(sender, ("echo", x))


def relay(parent: otp.Pid, trap: bool = False) -> None:
    """Forward every message to ``parent``; optionally trap exits."""
    otp.trap_exit(trap)
    otp.send(parent, ("ready", otp.self()))
    while True:
        otp.send(parent, ("got", otp.self(), otp.receive()))


def exit_with(reason) -> None:
    raise otp.ProcessExit(reason)


def crash(message: str = "boom") -> None:
    raise ValueError(message)


def send_then_exit(dest: otp.Pid, n: int, reason="normal") -> None:
    for i in range(n):
        otp.send(dest, ("seq", i))
    if reason != "normal":
        raise otp.ProcessExit(reason)


def link_and_report(parent: otp.Pid, trap: bool, victim_fn=wait_forever) -> None:
    """Spawn-link a victim, tell the parent its pid, then relay messages."""
    otp.trap_exit(trap)
    victim = otp.spawn_link(victim_fn)
    otp.send(parent, ("victim", victim))
    while True:
        otp.send(parent, ("got", otp.self(), otp.receive()))


def link_to(parent: otp.Pid, target: otp.Pid, trap: bool = False) -> None:
    otp.trap_exit(trap)
    otp.link(target)
    otp.send(parent, ("linked", otp.self()))
    while True:
        otp.send(parent, ("got", otp.self(), otp.receive()))


def busy_linked(parent: otp.Pid, target: otp.Pid) -> None:
    """Link to ``target`` then compute forever in pure Python."""
    otp.link(target)
    otp.send(parent, ("busy", otp.self()))
    x = 0
    while True:
        x += 1


def stuck_in_c(parent: otp.Pid, target: otp.Pid) -> None:
    """Link to ``target`` then block the interrupt signal and spin in a
    loop that never returns to the kernel: only the signal thread's forced
    exit can end it."""
    import signal

    otp.link(target)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    otp.send(parent, ("stuck", otp.self()))
    while True:
        time.sleep(0.05)  # sleep-ok: the blocked process is the subject, not a wait


def tree(parent: otp.Pid, depth: int, fanout: int) -> None:
    """A linked tree of processes; every node reports its OS pid."""
    otp.send(parent, ("os_pid", os.getpid()))
    if depth > 0:
        for _ in range(fanout):
            otp.spawn_link(tree, parent, depth - 1, fanout)
    otp.receive()


def unlinked_spawner(parent: otp.Pid) -> None:
    child = otp.spawn(wait_forever)
    otp.send(parent, ("child", child))


def spawn_subprocess(parent: otp.Pid) -> None:
    """Start an OS subprocess (not an OTP process) and wait."""
    import subprocess

    p = subprocess.Popen(["sleep", "300"])
    otp.send(parent, ("sub", p.pid))
    otp.receive()


def monitor_and_report(parent: otp.Pid, target: otp.Pid) -> None:
    ref = otp.monitor(target)
    otp.send(parent, ("monitoring", otp.self()))
    otp.send(parent, ("down", otp.receive(match=lambda m: isinstance(m, otp.DOWN) and m.ref == ref)))


class Echo(otp.GenServer):
    def init(self, args):
        return args

    def handle_call(self, request, from_, state):
        if request == "crash":
            raise RuntimeError("crash in handle_call")
        if request == "state":
            return otp.Reply(state, state)
        if request == "defer":
            otp.send(otp.self(), ("later", from_))
            return otp.NoReply(state)
        if request == "stop":
            return otp.Stop("normal", state, "stopping")
        if isinstance(request, tuple) and request[0] == "notify_sleep":
            otp.send(request[1], "sleeping")
            time.sleep(request[2])  # sleep-ok: a server stuck in a call is the subject
            return otp.Reply("slept", state)
        if isinstance(request, tuple) and request[0] == "span":
            start = time.monotonic()
            time.sleep(request[1])  # sleep-ok: a busy server is the subject
            return otp.Reply((start, time.monotonic()), state)
        if isinstance(request, tuple) and request[0] == "sleep":
            time.sleep(request[1])  # sleep-ok: a slow server is the subject
            return otp.Reply("slept", state)
        if isinstance(request, tuple) and request[0] == "exit_now":
            raise otp.ProcessExit(request[1])
        return otp.Reply(request, state)

    def handle_cast(self, request, state):
        return otp.NoReply(request)

    def handle_info(self, msg, state):
        if isinstance(msg, tuple) and msg[0] == "later":
            otp.reply(msg[1], "deferred")
            return otp.NoReply(state)
        return otp.NoReply(("info", msg))


class Reporter(otp.GenServer):
    """Reports its callbacks to ``parent`` (given as init args)."""

    def init(self, args):
        parent, trap, action = args
        otp.trap_exit(trap)
        otp.send(parent, ("init", otp.self()))
        return otp.NoReply(parent, action) if action is not None else parent

    def handle_call(self, request, from_, parent):
        return otp.Reply(request, parent)

    def handle_cast(self, request, parent):
        if request == "bad":
            return "not a valid return"
        if request == "stop":
            return otp.Stop(("shutdown", "asked"), parent)
        return otp.NoReply(parent)

    def handle_info(self, msg, parent):
        otp.send(parent, ("info", msg))
        if msg == "timeout":
            return otp.NoReply(parent)
        if msg == "set_timeout":
            return otp.NoReply(parent, 0.05)
        return otp.NoReply(parent)

    def handle_continue(self, term, parent):
        otp.send(parent, ("continue", term))
        return otp.NoReply(parent)

    def terminate(self, reason, parent):
        otp.send(parent, ("terminate", reason))


class FailingInit(otp.GenServer):
    def init(self, how):
        if how == "raise":
            raise KeyError("no such thing")
        if how == "stop":
            return otp.Stop("bad_config")
        if how == "ignore":
            return otp.Ignore
        if how == "slow":
            time.sleep(10)  # sleep-ok: the start timeout is the subject
        return how


def puppet(parent: otp.Pid, trap: bool) -> None:
    """Obey commands from ``parent``; forward every other message to it."""
    otp.trap_exit(trap)
    me = otp.self()
    otp.send(parent, ("ready", me))
    while True:
        msg = otp.receive()
        if type(msg) is tuple and msg and msg[0] == "cmd":
            op, arg = msg[1], msg[2]
            if op == "echo":
                otp.send(parent, ("echo", me, arg))
            elif op == "exit":
                raise otp.ProcessExit(arg)
            elif op == "crash":
                raise ValueError(arg)
            elif op == "link":
                otp.link(arg)
                otp.send(parent, ("linked", me, arg))
            elif op == "unlink":
                otp.unlink(arg)
                otp.send(parent, ("unlinked", me, arg))
            elif op == "burst":
                for i in range(arg):
                    otp.send(parent, ("burst", me, i))
        else:
            otp.send(parent, ("fwd", me, msg))


class Child(otp.GenServer):
    """A supervised worker the tests can make exit: cast ('die', reason)."""

    def init(self, args):
        return args

    def handle_call(self, request, from_, state):
        return otp.Reply(state, state)

    def handle_cast(self, request, state):
        if request[0] == "die":
            return otp.Stop(request[1], state)
        return otp.NoReply(state)


class SlowToStop(otp.GenServer):
    """Traps exits; its terminate blocks for ``seconds`` (a hanging child)."""

    def init(self, seconds):
        otp.trap_exit(True)
        return seconds

    def handle_call(self, request, from_, state):
        return otp.Reply(state, state)

    def terminate(self, reason, seconds):
        time.sleep(seconds)  # sleep-ok: a child slow to stop is the subject


def failing_start(reason):
    raise otp.StartError(reason)


def ignoring_start():
    return None


def start_unless_file(path: str, value=None):
    """Start a Child unless ``path`` exists (then the start fails): lets a
    test make restarts fail and succeed again."""
    if os.path.exists(path):
        raise otp.StartError(("refused", path))
    return Child.start_link(value)


class ConfiguredSup(otp.Supervisor):
    """Class-form supervisor whose init returns what the test passed."""

    def init(self, args):
        return args


def start_after_failures(path: str, failures: int, value=None):
    """Count calls in ``path``; the first start succeeds, the next
    ``failures`` starts fail, later ones succeed again."""
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(count + 1))
    if 1 <= count <= failures:
        raise otp.StartError(("attempt", count))
    return Child.start_link(value)
