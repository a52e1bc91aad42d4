"""The node runtime: clean shutdown, no orphans, no zombies."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from helpers import down_of, recv_tagged, wait_dead
from procs import spawn_subprocess, tree, unlinked_spawner, wait_forever
from test_application import spec

import otp
from otp import _oslib, application

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_os_pids_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait (on pidfds, no polling) until every OS pid has exited; return
    those still alive at the deadline."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], remaining)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def _collect(n: int, tag: str = "os_pid") -> list[int]:
    return [recv_tagged(tag)[1] for _ in range(n)]


def test_node_exit_stops_everything_and_removes_files(node):
    pids = [otp.spawn(wait_forever) for _ in range(5)]
    assert len(os.listdir(node.info.dir)) > 0
    assert all(otp.is_alive(p) for p in pids)
    # the fixture asserts that nothing outlives the node


def test_unlinked_grandchildren_are_stopped_too(node):
    otp.spawn(unlinked_spawner, otp.self())
    _, child = recv_tagged("child")
    assert otp.is_alive(child)


def _order_writer(path: str, name: str, parent: otp.Pid) -> None:
    otp.trap_exit(True)
    otp.send(parent, ("trapping", name))
    msg = otp.receive(match=lambda m: isinstance(m, otp.EXIT))
    with open(path, "a") as f:
        f.write(f"{name}:{msg.reason}\n")


def test_node_stops_top_level_processes_in_reverse_start_order(tmp_path):
    log = str(tmp_path / "order")
    with otp.Node():
        for name in "abcde":
            otp.spawn_link(_order_writer, log, name, otp.self())
        for _ in range(5):
            recv_tagged("trapping")
    with open(log) as f:
        assert f.read().split() == [f"{n}:shutdown" for n in "edcba"]


def test_processes_that_ignore_shutdown_are_killed(tmp_path):
    def stubborn():
        otp.trap_exit(True)
        while True:
            otp.receive()

    with otp.Node() as n:
        pid = otp.spawn(stubborn)
        zygote = n.zygote_ospid
    assert wait_os_pids_gone([pid.ospid, zygote], 1) == []


def test_sigkill_of_a_middle_process_takes_its_linked_tree(node):
    top = otp.spawn(tree, otp.self(), 2, 2)  # 1 + 2 + 4 processes
    os_pids = _collect(7)
    ref = otp.monitor(top)
    middle = os_pids[1]
    os.kill(middle, signal.SIGKILL)
    assert down_of(ref).reason == "killed"
    assert wait_os_pids_gone(os_pids, 5) == []


def test_user_subprocess_dies_with_its_process(node):
    pid = otp.spawn(spawn_subprocess, otp.self())
    _, sub = recv_tagged("sub")
    os.kill(pid.ospid, signal.SIGKILL)
    assert wait_os_pids_gone([sub], 5) == []


def test_zombies_are_reaped(node):
    pids = [otp.spawn(lambda: None) for _ in range(5)]
    for p in pids:
        wait_dead(p)
    assert wait_os_pids_gone([p.ospid for p in pids], 5) == []  # exited (maybe zombies)
    live = node.os_pids()  # the zygote reaps before it answers
    assert not set(live) & {p.ospid for p in pids}
    children = {p.pid: p for p in __import__("psutil").Process(node.zygote_ospid).children()}
    for p in pids:
        assert p.ospid not in children  # reaped, not a zombie child of the zygote


RUNTIME_SCRIPT = """
import json, os, sys
sys.path.insert(0, {here!r})
import otp
from procs import tree, spawn_subprocess
with otp.Node(start_method={method!r}) as node:
    otp.spawn(tree, otp.self(), 2, 3)
    otp.spawn(spawn_subprocess, otp.self())
    pids = [otp.receive(10)[1] for _ in range(1 + 3 + 9 + 1)]
    pids += [node.zygote_ospid]
    print(json.dumps(pids), flush=True)
    otp.receive()
"""


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_no_orphan_after_runtime_is_sigkilled(method):
    script = RUNTIME_SCRIPT.format(here=HERE, method=method)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pids = json.loads(line)
        assert len(pids) == 15
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_os_pids_gone(pids, 5) == [], "processes outlived their SIGKILLed runtime"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


PRINTING_SCRIPT = """
import otp

def say(word):
    print(word)

with otp.Node(start_method={method!r}):
    pid, ref = otp.spawn_monitor(say, "spawned")
    otp.receive(10, lambda m: isinstance(m, otp.DOWN))
    print("root")
"""


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_output_of_a_process_is_flushed_before_its_death_is_seen(method):
    """stdout to a pipe is block-buffered: a process's prints reach it
    before anyone learns that the process ended."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.path.dirname(HERE)
    out = subprocess.run(
        [sys.executable, "-c", PRINTING_SCRIPT.format(method=method)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["spawned", "root"]


def test_sigkill_of_zygote_kills_every_process():
    with otp.Node() as n:
        otp.trap_exit(True)  # the kernel supervisor dies too, and we are linked to it
        pids = [otp.spawn(wait_forever) for _ in range(3)]
        os.kill(n.zygote_ospid, signal.SIGKILL)
        assert wait_os_pids_gone([p.ospid for p in pids], 5) == []


def test_invalid_node_arguments():
    with pytest.raises(ValueError):
        otp.Node(start_method="threads")
    with pytest.raises(ValueError):
        otp.Node(name="a/b")
    with pytest.raises(ValueError):
        otp.Node(embryos=-1)


def test_node_without_embryos_still_spawns():
    with otp.Node(embryos=0):
        me = otp.self()
        otp.spawn(lambda: otp.send(me, "up"))
        assert otp.receive(10) == "up"


def test_os_pids_of_a_node_not_running_is_a_node_error():
    with pytest.raises(otp.NodeError, match="not running"):
        otp.Node().os_pids()


def test_proc_state_and_descendants_read_the_kernels_view():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        os.waitpid(child.pid, os.WUNTRACED)  # returns once it is stopped
        st = _oslib.proc_state(child.pid)
        assert st is not None and st.stopped and not st.dead
        assert st.ppid == os.getpid() and st.start == _oslib.proc_start_time(child.pid)
        assert st[0] == st.state and st[1] == st.start  # read as (state, start) too
        assert child.pid in _oslib.descendants(os.getpid())
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
        st = _oslib.proc_state(child.pid)
        assert st is not None and st.dead and not _oslib.os_process_alive(child.pid, st.start)
    finally:
        child.kill()
        child.wait()
    assert _oslib.proc_state(child.pid) is None or _oslib.proc_state(child.pid).start != st.start


def test_kernel_supervisor_runs_the_registry_the_timer_server_then_the_application_controller(node):
    """The kernel supervisor's children: the name registry, the timer
    server, then the application controller (registered as
    ``application_controller``)."""
    ids = [child.id for child in otp.supervisor.which_children(node.kernel)]
    assert ids == ["registry", "timer_server", "application_controller"]
    assert otp.whereis("application_controller") is not None


def test_node_stop_stops_running_applications_in_reverse_start_order(tmp_path):
    """Leaving the node stops the running applications, the most recently
    started first (application_controller's terminate), each through its
    stop callback."""
    log = str(tmp_path / "stops")
    with otp.Node():
        application.ensure_all_started(spec("top", deps=[spec("base", log=log)], log=log))
        application.start(spec("last", log=log))
    with open(log) as f:
        assert f.read().split() == ["last", "top", "base"]
