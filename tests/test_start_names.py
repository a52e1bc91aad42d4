"""Bad ``name=`` at start: a typed error in the caller, never the caller's
death through the link.

A name whose shape is wrong is refused in the caller before anything is
spawned: ``StartError(('invalid_name', name, why))``.  A name of the right
shape that the registry cannot take (a via name of a registry that does not
exist, a key the registry refuses) fails the start in the new process, which
unlinks from its starter first: ``StartError(('invalid_name', name,
Crash(...)))``."""

from __future__ import annotations

import pytest
from helpers import down_of

import otp
from otp import _process
from otp import supervisor as sup_api


class Named(otp.GenServer):
    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


#: refused in the caller, before spawning: (test id, name)
SHAPE = {
    "list": [1, 2],
    "dict": {"a": 1},
    "tuple-with-list": (1, [2]),
    "via-1": ("$via",),
    "via-2": ("$via", "reg"),
    "via-4": ("$via", "reg", "k", "extra"),
    "via-list-key": ("$via", "reg", ["k"]),
    "bool": True,
    "float": 1.5,
    "tuple-with-float": ("a", 1.5),
    "object": object(),
}


def nested(depth: int) -> tuple:
    name: object = "deep"
    for _ in range(depth):
        name = (name,)
    return name  # type: ignore[return-value]


#: the right shape, refused by the registry in the new process (a via
#: registry that does not exist; tuples nested deeper than it stores)
REFUSED = {"no-such-registry": otp.via("no-such-registry", "k"), "too-deep": nested(40)}


def spawned_count() -> int:
    return len(_process.current().spawned)


def assert_invalid_name(info, name, why=None):
    reason = info.value.reason
    assert reason[0] == "invalid_name" and reason[1] == name, reason
    if why is not None:
        assert isinstance(reason[2], why), reason


@pytest.mark.parametrize("name", SHAPE.values(), ids=SHAPE.keys())
def test_bad_shape_raises_in_the_caller_before_spawning(node, name):
    before = spawned_count()
    for start in (Named.start_link, Named.start):
        with pytest.raises(otp.StartError) as info:
            start(name=name)
        assert_invalid_name(info, name, str)
    assert spawned_count() == before
    assert otp.is_alive(otp.self())


@pytest.mark.parametrize("name", REFUSED.values(), ids=REFUSED.keys())
def test_refused_name_fails_the_start_not_the_caller(node, name):
    with pytest.raises(otp.StartError) as info:
        Named.start_link(name=name)
    assert_invalid_name(info, name, otp.Crash)
    # The failed server unlinked before it answered: no exit signal follows.
    assert otp.call(Named.start_link(name="fine"), "alive") == "alive"
    assert otp.is_alive(otp.self())


def test_int_name_is_a_name(node):
    server = Named.start_link(name=5)
    assert otp.whereis(5) == server and otp.call(5, "hi") == "hi"
    otp.stop(server)


@pytest.mark.parametrize("name", [[1, 2], otp.via("no-such-registry", "k")], ids=["list", "no-such-registry"])
def test_supervisor_reports_a_child_with_a_bad_name(node, name):
    otp.trap_exit(True)
    with pytest.raises(otp.StartError) as info:
        otp.Supervisor.start_link([Named.child_spec(name=name)])
    shutdown, (failed, child_id, reason) = info.value.reason
    assert (shutdown, failed, child_id) == ("shutdown", "failed_to_start_child", "Named")
    assert reason[0] == "invalid_name" and reason[1] == name
    sup = otp.Supervisor.start_link([])
    ref = otp.monitor(sup)
    with pytest.raises(otp.SupervisorError) as info:
        sup_api.start_child(sup, Named.child_spec(name=name))
    assert info.value.reason[0] == "invalid_name"
    assert sup_api.which_children(sup) == []  # it survived and kept nothing
    otp.exit(sup, "shutdown")
    assert down_of(ref).reason == "shutdown"


@pytest.mark.parametrize(
    "name", [[1], ("$via", "x"), otp.via("no-such-registry", 1)], ids=["list", "via-2", "no-such-registry"]
)
def test_supervisors_own_bad_name(node, name):
    before = spawned_count()
    starts = [
        lambda: otp.Supervisor.start_link([], name=name),
        lambda: otp.DynamicSupervisor.start_link(name=name),
        lambda: otp.DynamicSupervisor.start(name=name),
        lambda: otp.TaskSupervisor.start_link(name=name),
    ]
    for start in starts:
        with pytest.raises(otp.StartError) as info:
            start()
        assert_invalid_name(info, name)
    if name[0] != "$via" or len(name) != 3:
        assert spawned_count() == before
    assert otp.is_alive(otp.self())
