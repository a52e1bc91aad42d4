"""Cluster membership through the cluster store (etcd): see :mod:`otp._cluster`.

::

    config = otp.cluster.ClusterConfig(endpoints=("http://127.0.0.1:2379",),
                                       cluster="prod", node="alpha@10.0.0.5")
    otp.cluster.start_link(config)        # or ClusterMember.child_spec under a supervisor
    otp.cluster.subscribe()               # MemberUp / MemberDown / NamesLost messages
"""

from __future__ import annotations

from ._cluster import (
    MEMBER,
    ClusterConfig,
    ClusterError,
    ClusterMember,
    ClusterUnavailable,
    MemberDown,
    MemberUp,
    NamesLost,
    NotLocalPid,
    nodes,
    subscribe,
)
from ._pid import Pid

__all__ = [
    "ClusterConfig",
    "ClusterMember",
    "ClusterError",
    "ClusterUnavailable",
    "NotLocalPid",
    "MemberUp",
    "MemberDown",
    "NamesLost",
    "MEMBER",
    "start_link",
    "child_spec",
    "subscribe",
    "nodes",
]


def start_link(config: ClusterConfig, timeout: float = 30.0) -> Pid:
    """Join the cluster: start the node's member (registered as
    ``otp.cluster``), linked to the caller; returns once the node's record
    is in the store and the node watch runs.  Raises ``otp.StartError``
    with a :class:`ClusterUnavailable` reason if the store cannot be
    reached."""
    pid = ClusterMember.start_link(config, name=MEMBER, timeout=timeout)
    assert pid is not None  # the member never ignores its start
    return pid


def child_spec(config: ClusterConfig) -> object:
    """The member as a child of a supervisor (a permanent worker)."""
    return ClusterMember.child_spec(config, id=MEMBER, name=MEMBER)
