"""otp.observer's collector: the pure parts (safe_repr, the forest fed by
supervisor events, metrics, the table at 10,000 rows) and the collector
process on a node (trees by events, restarts, drill-down that cannot hang,
log reports, names, idling out)."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
from helpers import TIMEOUT, down_of, nothing_matching, recv

import otp
import otp.observer as observer
import otp.sys
from otp._child_spec import ChildInfo
from otp._pid import Pid, new_uid
from otp.observer._metrics import Metrics, render_text
from otp.observer._table import PageQuery, Table
from otp.observer._tree import Forest

# ---------------------------------------------------------------- servers


class Counter(otp.GenServer):
    def init(self, start):
        return {"count": start}

    def handle_call(self, request, from_, state):
        if type(request) is tuple and request[0] == "busy":
            otp.send(request[1], "inside")
            otp.receive(timeout=30, match=lambda m: m == "wake")  # a long callback
        return otp.Reply(state["count"], state)

    def handle_cast(self, n, state):
        return otp.NoReply({"count": state["count"] + n})


class Hostile:
    """An object whose every method would hang or crash a viewer."""

    def __init__(self):
        self.inside = [1, 2, 3]

    def __repr__(self):
        time.sleep(3600)  # sleep-ok: a hang the observer must never call into
        return "never"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)  # what pickle looks up must still work
        raise SystemExit("no")

    @property
    def trap(self):
        time.sleep(3600)  # sleep-ok: a hang the observer must never call into


class HostileState(otp.GenServer):
    def init(self, _):
        return {"hostile": Hostile()}


class Unloadable:
    """Unpickling it ends the process that tries."""

    def __reduce__(self):
        return (os._exit, (3,))


class UnloadableState(otp.GenServer):
    def init(self, _):
        return [Unloadable()]


class ShopApp(otp.application.Application):
    def start(self, start_type, args):
        return otp.Supervisor.start_link([Counter.child_spec(0, id="counter")])


SHOP = otp.application.AppSpec("observer_shop", "a shop", "1.0", mod=(ShopApp, None))


def plain_worker():
    otp.receive(match=lambda m: m == "stop")


def crasher():
    otp.receive(match=lambda m: m == "crash")
    raise ZeroDivisionError("observer test crash")


def spawn_crasher():
    return otp.spawn_link(crasher)


def fake_pid(ospid: int = 4242) -> Pid:
    return Pid("test", new_uid(), ospid, 1000)


def tree_event(match):
    return recv(lambda m: isinstance(m, observer.TreeChanged) and match(m))


def child_node(tree: observer.TreeSnapshot, child_id):
    stack = list(tree.roots)
    while stack:
        node = stack.pop()
        if node.child_id == child_id:
            return node
        stack.extend(node.children)
    return None


# ---------------------------------------------------------------- pure parts


def test_safe_repr_runs_no_user_code():
    text = observer.safe_repr({"a": Hostile(), "b": (Hostile(),)})
    assert text == "{'a': Hostile(inside=[1, 2, 3]), 'b': (Hostile(inside=[1, 2, 3]),)}"


def test_safe_repr_bounds_size_depth_and_cycles():
    cyclic: list = [1]
    cyclic.append(cyclic)
    assert observer.safe_repr(cyclic) == "[1, ...]"
    long = observer.safe_repr(list(range(100_000)), limit=100)
    assert len(long) <= 100 and long.endswith("...")
    assert "more" in observer.safe_repr(list(range(100)), items=5)
    assert observer.safe_repr([[[[[1]]]]], depth=3) == "[[[<list>]]]"


def test_forest_counts_restarts_from_events_and_keeps_exit_reasons():
    forest = Forest()
    sup, a1, a2, b = fake_pid(1), fake_pid(2), fake_pid(3), fake_pid(4)
    forest.add_root(sup, "added", "top")
    forest.listed(sup, [ChildInfo("a", a1, "worker"), ChildInfo("b", b, "worker")])
    change = forest.event(sup, "exited", ("a", a1, "killed"))
    assert change.exits == [("top", "a", "killed")]
    change = forest.event(sup, "started", ("a", a2))
    assert change.restarts == [("top", "a")]
    node = child_node(observer.TreeSnapshot(forest.snapshot(), forest.version, 0.0), "a")
    assert (node.pid, node.restarts, node.last_exit, node.status) == (a2, 1, "'killed'", "running")
    # An event older than the listing (queued behind its answer) changes nothing.
    forest.event(sup, "started", ("a", a2))
    assert child_node(observer.TreeSnapshot(forest.snapshot(), 0, 0.0), "a").restarts == 1


def test_forest_follows_child_supervisors_and_forgets_their_subtrees():
    forest = Forest()
    top, mid, leaf = fake_pid(1), fake_pid(2), fake_pid(3)
    forest.add_root(top, "added", "top")
    change = forest.listed(top, [ChildInfo("mid", mid, "supervisor")])
    assert change.follow == [mid]
    forest.listed(mid, [ChildInfo("leaf", leaf, "worker")])
    assert forest.label_of(leaf, forest.positions()) == "top/mid/leaf"
    change = forest.event(top, "exited", ("mid", mid, "shutdown"))
    assert mid in change.forget and mid not in forest.sups


def test_forest_dynamic_children_have_no_id_and_no_label():
    forest = Forest()
    sup, c1, c2 = fake_pid(1), fake_pid(2), fake_pid(3)
    forest.add_root(sup, "added", "dyn")
    forest.listed(sup, [ChildInfo(None, c1, "worker")])
    forest.event(sup, "started", (None, c2))
    forest.event(sup, "exited", (None, c1, "normal"))
    root = forest.snapshot()[0]
    assert root.dynamic and [c.pid for c in root.children] == [c2]
    assert forest.label_of(c2, forest.positions()) is None


def test_metrics_counters_survive_a_restart_of_the_labelled_process():
    metrics = Metrics()
    first, second = fake_pid(1), fake_pid(2)
    metrics.sampled("db", first, 10, 5, 0, 100, None, 0)
    metrics.sampled("db", first, 15, 7, 0, 100, None, 0)
    metrics.sampled("db", second, 3, 1, 2, 100, None, 1)  # restarted: counts from its own start
    values = metrics.values["otp_process_messages_in_total"]
    assert values[(("process", "db"),)] == 18
    metrics.exited("kernel", 'we"ird\nid', "killed")
    text = render_text(metrics.families())
    assert "# TYPE otp_process_messages_in_total counter" in text
    assert 'otp_process_messages_in_total{process="db"} 18' in text
    assert 'child="we\\"ird\\nid"' in text


def test_table_pages_10000_processes_within_a_second():
    table = Table(boot=0.0)
    pids = [fake_pid(100 + i) for i in range(10_000)]
    table.sync(pids)
    for i, pid in enumerate(pids):
        row = table.rows[pid]
        row.rss = (i * 7919) % 10_000 * 4096
        row.queue = i % 13
    names = {pid: f"p{i}" for i, pid in enumerate(pids[:500])}
    start = time.perf_counter()
    page = table.page(names, {}, PageQuery(sort="rss", descending=True, offset=100, limit=50))
    searched = table.page(names, {}, PageQuery(sort="name", search="p49"))
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"two pages of 10,000 rows took {elapsed:.2f}s"
    assert page.total == 10_000 and len(page.rows) == 50
    rss = [r.rss for r in page.rows]
    assert rss == sorted(rss, reverse=True)
    assert {r.name for r in searched.rows} == {"p49", *(f"p49{i}" for i in range(10))}


# ---------------------------------------------------------------- on a node


@pytest.fixture
def watched(node):
    """A supervisor the collector follows, and the test watching."""
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link(
        [Counter.child_spec(5, id="counter"), otp.child_spec("plain", start=(spawn_crasher, ()))],
        intensity=10,
        period=60,
    )
    otp.supervisor.subscribe(sup)
    observer.watch(observer.Config(interval=0.2))
    observer.add_root(sup, "top")
    tree_event(
        lambda m: m.supervisor == sup and m.event == "spec" and m.child_id == "counter"
    )  # its behaviour is known
    yield sup
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_collector_follows_the_kernel_tree_on_its_own(node):
    observer.watch()
    tree = observer.tree()
    assert tree.roots[0].origin == "kernel"
    kernel_children = [c.child_id for c in tree.roots[0].children]
    assert kernel_children[:3] == ["registry", "timer_server", "application_controller"]
    observer_sup = child_node(tree, "otp_observer")
    assert observer_sup is not None and observer_sup.type == "supervisor"


def test_application_trees_are_followed(node):
    otp.application.start(SHOP)
    top = otp.application.get_supervisor("observer_shop")
    observer.watch()  # its first round finds the application
    tree_event(lambda m: m.supervisor == top and m.event == "listed")
    root = [r for r in observer.tree().roots if r.pid == top][0]
    assert root.origin == "application observer_shop"
    assert [c.child_id for c in root.children] == ["counter"]
    otp.application.stop("observer_shop")
    tree_event(lambda m: m.supervisor == top and m.event in ("shutdown", "dropped"))
    assert all(r.pid != top for r in observer.tree().roots)


def test_sigkill_of_a_child_shows_as_exit_and_restart(watched):
    before = child_node(observer.tree(), "counter").pid
    os.kill(before.ospid, signal.SIGKILL)
    started = recv(lambda m: type(m) is tuple and m[:3] == ("$supervisor", watched, "started"))
    tree_event(lambda m: m.event == "started" and m.pid == started[4])
    node = child_node(observer.tree(), "counter")
    assert node.pid == started[4] != before
    assert (node.restarts, node.last_exit, node.behaviour) == (1, "'killed'", "gen_server")
    families = {f.name: f for f in observer.metrics()}
    restarts = {s.labels: s.value for s in families["otp_supervisor_child_restarts_total"].samples}
    assert restarts[(("supervisor", "top"), ("child", "counter"))] == 1
    exits = {s.labels: s.value for s in families["otp_supervisor_child_exits_total"].samples}
    assert exits[(("supervisor", "top"), ("child", "counter"), ("reason", "killed"))] == 1


def test_a_root_added_without_a_label_is_labelled_by_its_name(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Counter.child_spec(0, id="counter")], name="shop")
    observer.watch()
    observer.add_root(sup)
    tree_event(lambda m: m.supervisor == sup and m.event == "listed")
    root = [r for r in observer.tree().roots if r.pid == sup][0]
    assert (root.origin, root.name) == ("shop", "shop")
    observer.refresh()
    families = {f.name: f for f in observer.metrics()}
    labels = {s.labels for s in families["otp_process_messages_in_total"].samples}
    assert (("process", "shop/counter"),) in labels
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_process_table_rows_carry_queue_length_and_tree_position(watched):
    pid = child_node(observer.tree(), "counter").pid
    otp.sys.suspend(pid)
    for n in range(3):
        otp.cast(pid, n)
    observer.refresh()
    page = observer.processes(search=f"{pid.uid:016x}")
    row = page.rows[0]
    assert (row.pid, row.child_id, row.behaviour, row.supervisor) == (pid, "counter", "gen_server", watched)
    assert row.message_queue_len == 3 and row.rss and row.status == "waiting"
    otp.sys.resume(pid)


def test_process_detail_renders_state_safely(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([HostileState.child_spec(None, id="hostile")])
    observer.watch()
    observer.add_root(sup)
    tree_event(lambda m: m.supervisor == sup and m.event == "spec")
    pid = otp.supervisor.which_children(sup)[0].pid
    detail = observer.process_detail(pid)
    assert detail.state == "{'hostile': Hostile(inside=[1, 2, 3])}"
    assert detail.alive and detail.info["status"] == "waiting" and sup in detail.links
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_a_state_that_kills_its_reader_costs_only_the_inspector(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([UnloadableState.child_spec(None, id="unloadable")])
    observer.watch()
    observer.add_root(sup)
    tree_event(lambda m: m.supervisor == sup and m.event == "spec")
    pid = otp.supervisor.which_children(sup)[0].pid
    collector = observer.collector()
    detail = observer.process_detail(pid)
    assert detail.state is None and "inspector exited" in detail.state_error
    assert detail.info == {} and detail.row is not None and detail.row.behaviour == "gen_server"
    assert otp.is_alive(pid) and observer.collector() == collector
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_process_detail_of_a_busy_server_answers_within_its_timeout(watched):
    pid = child_node(observer.tree(), "counter").pid
    request = otp.send_request(pid, ("busy", otp.self()))
    recv(lambda m: m == "inside")  # the server is in its long callback
    start = time.monotonic()
    detail = observer.process_detail(pid, timeout=0.5)
    elapsed = time.monotonic() - start
    # get_state timed out, or (on a loaded machine) the whole inspection did
    assert detail.state is None
    assert "CallTimeout" in detail.state_error or "did not end in time" in detail.state_error, detail.state_error
    assert elapsed < 0.5 + 1.0 + 3.0  # its timeout, the inspector's margin, a loaded machine
    otp.send(pid, "wake")
    assert otp.receive_response(request, TIMEOUT) == 5


def test_process_detail_never_sends_a_plain_process_a_system_message(node):
    pid = otp.spawn(plain_worker)
    detail = observer.process_detail(pid)
    assert detail.state is None and "not known to be a behaviour" in detail.state_error
    assert otp.process_info(pid, ["message_queue_len"]) == {"message_queue_len": 0}
    otp.send(pid, "stop")


def test_crash_and_supervisor_reports_are_kept_and_filtered_by_pid(watched):
    assert observer.install_report_tap()
    plain = child_node(observer.tree(), "plain").pid
    otp.send(plain, "crash")
    added = recv(lambda m: isinstance(m, observer.LogAdded) and m.entry.kind == "crash")
    assert added.entry.pid == plain and "ZeroDivisionError" in added.entry.message
    recv(lambda m: isinstance(m, observer.LogAdded) and m.entry.kind == "supervisor" and m.entry.pid == plain)
    page = observer.logs(pid=plain)
    assert page.tapped and {e.kind for e in page.entries} >= {"crash", "supervisor"}
    assert all(e.pid == plain for e in page.entries)
    assert observer.logs(kind="crash", after=page.last).entries == ()


def test_names_view_lists_names_keyed_registries_and_groups(node):
    counter = Counter.start_link(0, name="counter-name")
    otp.Registry.start_link(keys="unique", name="sessions")
    otp.Registry.register("sessions", "alice", {"room": 1})
    otp.pg.join("workers", counter)
    view = observer.names()
    assert any(e.name == "counter-name" and e.pid == counter for e in view.names)
    sessions = [r for r in view.registries if r.name == "sessions"]
    assert sessions and sessions[0].entries == (("alice", otp.self(), "{'room': 1}"),)
    assert any(g.group == "workers" and g.members == (counter,) for g in view.groups)


def test_collector_exits_when_nobody_looks(node):
    pid = observer.collector(observer.Config(idle_timeout=0.5, linger=0.2))
    ref = otp.monitor(pid)
    assert down_of(ref, TIMEOUT).reason == "normal"
    assert otp.whereis(observer.COLLECTOR_NAME) is None
    assert observer.collector() != pid  # started again on demand


def test_rounds_stop_when_the_last_watcher_leaves(node):
    observer.watch(observer.Config(interval=0.1, linger=0.1))
    recv(lambda m: isinstance(m, observer.ProcessesRefreshed))
    observer.unwatch()
    rounds = observer.stats().rounds
    assert nothing_matching(lambda m: False, timeout=1.0)
    assert observer.stats().rounds <= rounds + 2  # a round already due may still run
    logging.getLogger(__name__).info("rounds: %d", observer.stats().rounds)
