"""PartitionSupervisor: N copies of one spec, found by key.

What Elixir's PartitionSupervisor promises: every partition runs the
template, a key always maps to the same partition, a partition that dies
is restarted in place (and found again by the same key) while the others
go on.  Waits are on supervisor events and monitors, never on time.
"""

from __future__ import annotations

import os
import signal

import pytest
from procs import Child

import otp
from otp import partition_supervisor as ps
from otp import supervisor as sup_api

T = 10.0
NAME = "test.partitions"


def template(value="host"):
    return otp.child_spec("host", start=(Child.start_link, (value,)))


def with_partition(args, partition):
    return ((args[0], partition),)


def started(sup, child_id):
    def match(m):
        return type(m) is tuple and m[:4] == ("$supervisor", sup, "started", child_id)

    return otp.receive(T, match)


def test_each_partition_runs_the_template_with_its_arguments(node):
    sup = otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=3, with_arguments=with_partition)
    assert ps.partitions(NAME) == 3
    children = ps.children(NAME)
    assert len(set(children)) == 3 and all(otp.is_alive(pid) for pid in children)
    assert [otp.call(pid, "which") for pid in children] == [("host", 0), ("host", 1), ("host", 2)]
    assert [c.id for c in sup_api.which_children(sup)] == [0, 1, 2]
    assert otp.whereis(NAME) == sup


def test_int_keys_take_the_remainder_and_other_keys_a_stable_partition(node):
    otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=4, with_arguments=with_partition)
    assert [ps.partition_of(NAME, k) for k in (0, 5, 10, 4)] == [0, 1, 2, 0]
    keys = ["session-1", b"raw", ("auction", 7), ("nested", ("a", 1)), "é"]
    here = [ps.partition_of(NAME, k) for k in keys]
    assert all(0 <= p < 4 for p in here)
    assert len(set(ps.partition_of(NAME, f"s{i}") for i in range(40))) == 4  # spread over all

    # Another OS process of the node maps every key to the same partition.
    me = otp.self()
    otp.spawn(lambda: otp.send(me, ("there", [ps.partition_of(NAME, k) for k in keys])))
    assert otp.receive(T, lambda m: type(m) is tuple and m[0] == "there")[1] == here
    assert otp.call(ps.whereis(NAME, "session-1"), "which") == ("host", here[0])


def test_a_killed_partition_restarts_in_place_and_the_others_go_on(node):
    otp.trap_exit(True)
    sup = otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=3, with_arguments=with_partition)
    sup_api.subscribe(sup)
    before = ps.children(NAME)
    ref = otp.monitor(before[1])
    os.kill(before[1].ospid, signal.SIGKILL)
    otp.receive(T, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    new = started(sup, 1)[4]
    after = ps.children(NAME)
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] == new != before[1]
    assert ps.whereis(NAME, 4) == new  # 4 % 3 == 1
    assert otp.call(new, "which") == ("host", 1)


def test_under_a_supervisor_as_a_child_spec(node):
    spec = otp.PartitionSupervisor.child_spec(template(), name=NAME, partitions=2)
    top = otp.Supervisor.start_link([spec])
    (child,) = sup_api.which_children(top)
    assert child.id == NAME and child.type == "supervisor" and otp.whereis(NAME) == child.pid
    assert [otp.call(pid, "which") for pid in ps.children(NAME)] == ["host", "host"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_partition_counts_are_refused_before_anything_starts(node, bad):
    with pytest.raises(ValueError, match="partitions"):
        otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=bad)
    assert otp.whereis(NAME) is None


def test_bad_with_arguments_is_refused(node):
    with pytest.raises(ValueError, match="with_arguments"):
        otp.PartitionSupervisor.child_spec(template(), name=NAME, with_arguments=42)


def test_lookups_of_an_unknown_name_raise_noproc(node):
    for lookup in (lambda: ps.partitions("nope"), lambda: ps.whereis("nope", 1), lambda: ps.children("nope")):
        with pytest.raises(otp.NoProc):
            lookup()


def test_a_restarted_partition_supervisor_is_counted_again(node):
    otp.trap_exit(True)
    first = otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=2)
    assert ps.partitions(NAME) == 2
    otp.exit(first, "shutdown")
    otp.receive(T, lambda m: isinstance(m, otp.EXIT) and m.pid == first)
    otp.PartitionSupervisor.start_link(template(), name=NAME, partitions=5)
    assert ps.partitions(NAME) == 5 and len(ps.children(NAME)) == 5
