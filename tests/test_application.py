"""Applications: the controller, masters, dependencies, environment and
restart types (OTP's ``application`` module)."""

from __future__ import annotations

import os
import select
import time

import pytest
from helpers import down_of, exit_of, recv_tagged

import otp
from otp import application
from otp.application import Application, AppSpec


class ReportingApp(Application):
    """Starts an empty supervisor; tells ``args['report']`` (if any) of its
    callbacks, naming the application and the process they run in."""

    def start(self, start_type, args):
        sup = otp.Supervisor.start_link([], strategy="one_for_one")
        report = args.get("report")
        if report is not None:
            otp.send(report, ("started", args["name"], start_type, otp.self(), sup))
        return sup, args

    def prep_stop(self, state):
        if state.get("report") is not None:
            otp.send(state["report"], ("prep_stop", state["name"]))
        return {**state, "prepared": True}

    def stop(self, state):
        if state.get("log") is not None:  # a file keeps the order of stops in different processes
            with open(state["log"], "a") as f:
                f.write(f"{state['name']}\n")
        if state.get("report") is not None:
            otp.send(state["report"], ("stopped", state["name"], state.get("prepared", False)))


class FailingApp(Application):
    def start(self, start_type, args):
        raise ValueError("no start today")


class BadReturnApp(Application):
    def start(self, start_type, args):
        return "not a pid"


def spec(name, *, deps=(), report=None, env=None, cls=ReportingApp, log=None):
    args = {"name": name, "report": report, "log": log}
    return AppSpec(name, f"the {name} app", "1.0", applications=deps, env=env or {}, mod=(cls, args))


def started(name):
    """The ('started', ...) report of ``name``: (start_type, master, sup)."""
    msg = otp.receive(10, lambda m: isinstance(m, tuple) and m[:2] == ("started", name))
    return msg[2:]


def running():
    return [info.name for info in application.which_applications()]


def wait_os_pids_gone(pids, timeout=10.0):
    """Wait on pidfds until the OS processes exited; those still alive."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds and deadline > time.monotonic():
            ready, _, _ = select.select(list(fds), [], [], deadline - time.monotonic())
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


# ------------------------------------------------------------ start / stop


def test_start_runs_start_in_a_master_and_stop_runs_prep_stop_then_stop(node):
    """application:start/2 calls Mod:start(normal, Args) in the application
    master; application:stop/1 calls prep_stop, stops the tree, then stop."""
    me = otp.self()
    assert application.start(spec("a", report=me)) is None
    start_type, master, sup = started("a")
    assert start_type == "normal" and master != me
    assert application.get_supervisor("a") == sup
    ref = otp.monitor(sup)
    application.stop("a")
    assert recv_tagged("prep_stop") == ("prep_stop", "a")
    assert down_of(ref).reason == "shutdown"
    assert recv_tagged("stopped") == ("stopped", "a", True)  # prep_stop's state reached stop
    assert running() == [] and application.get_supervisor("a") is None
    assert not otp.is_alive(master)


def test_start_twice_raises_already_started(node):
    """application:start/2 of a running application: {error, {already_started, App}}."""
    application.start(spec("a"))
    with pytest.raises(application.AlreadyStarted) as info:
        application.start("a")
    assert info.value.app == "a"
    application.ensure_started("a")  # application:ensure_started/1: no error


def test_unknown_application(node):
    """application:start/1 of an application that cannot be loaded is an
    error; application:stop/1 of one not running: {error, {not_started, App}}."""
    with pytest.raises(application.UnknownApplication):
        application.start("nowhere")
    with pytest.raises(application.UnknownApplication):
        application.ensure_all_started("nowhere")
    with pytest.raises(application.NotStarted):
        application.stop("nowhere")
    assert isinstance(application.UnknownApplication("x"), LookupError)


def test_load_twice_and_a_different_spec_of_a_loaded_name(node):
    """application:load/1 of a loaded application: {error, {already_loaded, App}}."""
    application.load(spec("a"))
    with pytest.raises(application.AlreadyLoaded):
        application.load(spec("a"))
    application.start(spec("a"))  # the same spec: started
    application.stop("a")
    with pytest.raises(application.AlreadyLoaded):
        application.start(AppSpec("a", "another", "2.0", mod=(ReportingApp, {"name": "a"})))
    assert [info.name for info in application.loaded_applications()] == ["a"]


def test_a_failed_start_is_a_typed_error_and_the_application_does_not_run(node):
    """Mod:start/2 raising or returning a bad value: {error, {Reason, ...}}."""
    with pytest.raises(application.StartFailed) as info:
        application.start(spec("f", cls=FailingApp))
    assert isinstance(info.value.reason, otp.Crash) and "no start today" in info.value.reason.message
    with pytest.raises(application.StartFailed) as info:
        application.start(spec("b", cls=BadReturnApp))
    assert info.value.reason == ("bad_return", "not a pid")
    assert running() == []


def test_library_application_has_no_processes(node):
    """An application without ``mod`` (a library application) is started
    and stopped without a master or supervisor."""
    application.start(AppSpec("lib", "a library", "0.1"))
    assert running() == ["lib"] and application.get_supervisor("lib") is None
    application.stop("lib")
    assert running() == []


# ------------------------------------------------------------ dependencies


def test_start_requires_the_dependencies_to_run(node):
    """application:start/2: {error, {not_started, Dep}} when a dependency
    in ``applications`` does not run."""
    application.load(spec("base"))
    with pytest.raises(application.NotStarted) as info:
        application.start(spec("top", deps=["base"]))
    assert info.value.app == "base"
    application.start("base")
    application.start("top")
    assert running() == ["top", "base"]


def test_ensure_all_started_starts_dependencies_first(node):
    """application:ensure_all_started/2: dependencies first (recursively,
    each once), returns the applications it started, in order."""
    me = otp.self()
    base = spec("base", report=me)
    mid = spec("mid", deps=[base], report=me)
    side = spec("side", deps=[base], report=me)
    top = spec("top", deps=[mid, side, "base"], report=me)
    assert application.ensure_all_started(top, "temporary") == ["base", "mid", "side", "top"]
    order = [otp.receive(10, lambda m: isinstance(m, tuple) and m[0] == "started")[1] for _ in range(4)]
    assert order == ["base", "mid", "side", "top"]
    assert application.ensure_all_started(top) == []  # all running already
    assert running() == ["top", "side", "mid", "base"]  # the most recently started first


def test_ensure_all_started_stops_what_it_started_when_one_fails(node):
    """application:ensure_all_started/2: if an application fails to start,
    those it started are stopped and the error is returned."""
    me = otp.self()
    base = spec("base", report=me)
    broken = spec("broken", deps=[base], cls=FailingApp)
    with pytest.raises(application.StartFailed):
        application.ensure_all_started(broken)
    assert recv_tagged("stopped")[1] == "base"
    assert running() == []


def test_a_failing_application_stops_the_others_in_reverse_start_order(node, tmp_path):
    """When a permanent application terminates, all other applications are
    stopped (most recently started first), and the node stops: the root,
    trapping exits, receives the exit signal and sees every application
    stopped."""
    otp.trap_exit(True)
    me = otp.self()
    log = str(tmp_path / "stops")
    application.ensure_all_started(spec("second", deps=[spec("first", log=log)], log=log))
    application.start(spec("crasher", report=me, log=log), type="permanent")
    _, _, sup = started("crasher")
    otp.exit(sup, "kill")
    msg = exit_of(otp.whereis("application_controller"))
    assert msg.reason == application.ApplicationTerminated("crasher", "killed")
    with open(log) as f:
        assert f.read().split() == ["crasher", "second", "first"]  # crasher's own stop first, as OTP's master
    assert running() == []


# ------------------------------------------------------------ environment


def test_env_defaults_set_env_and_get_all_env(node):
    """application:get_env/3, set_env/3, unset_env/2, get_all_env/1: the
    declared env is installed at load, over what set_env put before; other
    keys stay."""
    application.set_env("e", "port", 1)
    application.set_env("e", "extra", "kept")
    assert application.get_env("e", "port") == 1  # not loaded: set_env works all the same
    application.load(spec("e", env={"port": 8080, "host": "localhost"}))
    assert application.get_env("e", "port") == 8080
    assert application.get_env("e", "missing") is None
    assert application.get_env("e", "missing", default=5) == 5
    application.set_env("e", "port", 9090)
    assert application.get_all_env("e") == {"port": 9090, "host": "localhost", "extra": "kept"}
    application.unset_env("e", "extra")
    assert application.get_all_env("e") == {"port": 9090, "host": "localhost"}
    assert application.get_all_env("unknown") == {}


def test_which_applications_lists_name_description_vsn(node):
    """application:which_applications/0: {Name, Description, Vsn} of the
    running applications, the most recently started first."""
    application.start(AppSpec("one", "first one", "1.2"))
    application.start(spec("two"))
    assert application.which_applications() == [("two", "the two app", "1.0"), ("one", "first one", "1.2")]
    assert application.which_applications()[0].vsn == "1.0"


def test_spec_is_checked():
    """The .app keys have fixed types: a bad declaration is refused where it is made."""
    with pytest.raises(ValueError):
        AppSpec("")
    with pytest.raises(TypeError):
        AppSpec("x", mod=(object, None))
    with pytest.raises(TypeError):
        AppSpec("x", applications=[3])
    assert AppSpec("x", applications=["a", AppSpec("b")]).dependencies == ("a", "b")


def test_bad_type_is_a_value_error(node):
    """The type is one of temporary, transient, permanent."""
    with pytest.raises(ValueError):
        application.start(spec("a"), type="forever")


# ------------------------------------------------------------ restart types


def test_temporary_application_exit_is_only_reported(node):
    """A temporary application that terminates is reported; no other
    application is terminated and the node lives."""
    me = otp.self()
    application.start(spec("keeper"))
    application.start(spec("temp", report=me))
    _, master, sup = started("temp")
    ref = otp.monitor(master)
    otp.exit(sup, "kill")
    assert recv_tagged("stopped") == ("stopped", "temp", True)  # prep_stop and stop ran
    assert down_of(ref).reason == "killed"
    assert running() == ["keeper"]
    application.start("temp")  # can start again


def test_transient_application_exiting_normally_is_only_reported(node):
    """A transient application that terminates with reason normal is
    reported; no other application is terminated."""
    me = otp.self()
    application.start(spec("keeper"))
    application.start(spec("trans", report=me), type="transient")
    _, master, sup = started("trans")
    ref = otp.monitor(master)
    otp.stop(sup)  # the supervisor exits with 'normal'
    assert down_of(ref).reason == "normal"
    assert running() == ["keeper"]


def test_transient_application_exiting_abnormally_stops_the_node(node):
    """A transient application that terminates with another reason than
    normal terminates all other applications and the node."""
    otp.trap_exit(True)
    me = otp.self()
    application.start(spec("keeper", report=me))
    application.start(spec("trans", report=me), type="transient")
    _, _, sup = started("trans")
    otp.stop(sup, "boom")  # the supervisor exits with reason boom
    assert {recv_tagged("stopped")[1] for _ in range(2)} == {"trans", "keeper"}
    msg = otp.receive(10, lambda m: isinstance(m, otp.EXIT))
    assert msg.reason == application.ApplicationTerminated("trans", "boom")
    assert running() == []


def test_permanent_application_exit_kills_the_root(node):
    """A permanent application that terminates terminates all other
    applications and the node: the root, not trapping exits, exits with
    ApplicationTerminated(app, reason) (the node fixture then checks that
    no process outlives the node)."""
    me = otp.self()
    application.start(spec("other", report=me))
    _, other_master, other_sup = started("other")
    application.start(spec("perm", report=me), type="permanent")
    _, _, sup = started("perm")
    with pytest.raises(otp.ProcessExit) as info:
        otp.exit(sup, "kill")
        otp.receive(30, lambda m: False)  # the exit signal interrupts the wait
    assert info.value.reason == application.ApplicationTerminated("perm", "killed")
    # The controller stopped the other application before it signalled us.
    assert wait_os_pids_gone([other_master.ospid, other_sup.ospid, sup.ospid]) == []


def test_stop_of_a_permanent_application_is_not_a_failure(node):
    """application:stop/1 of a permanent application stops it alone: the
    node lives."""
    application.start(spec("perm"), type="permanent")
    application.stop("perm")
    assert running() == []


# ------------------------------------------------------------ MABEAM


def test_mabeam_is_a_temporary_application(app):
    """mabeam.start() starts the application 'mabeam' whose top supervisor
    it returns; mabeam.stop() stops it (application:stop/1)."""
    import mabeam

    assert "mabeam" in running()
    assert application.get_supervisor("mabeam") == app == otp.whereis("mabeam.sup")
    with pytest.raises(application.AlreadyStarted):
        mabeam.start()
    ref = otp.monitor(app)
    mabeam.stop()
    assert down_of(ref).reason == "shutdown"
    assert "mabeam" not in running()
    mabeam.stop()  # not running: nothing to do
