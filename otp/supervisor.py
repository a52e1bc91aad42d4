"""Supervisor management calls (OTP's ``supervisor`` module):
``otp.supervisor.start_child(sup, spec)``, ``terminate_child``,
``restart_child``, ``delete_child``, ``which_children``, ``count_children``,
``get_childspec``, ``check_childspecs``, and ``subscribe`` for events."""

from ._child_spec import ChildInfo, ChildSpec, SupervisorError, SupFlags, check_childspecs, child_spec
from ._supervisor import (
    count_children,
    delete_child,
    get_childspec,
    restart_child,
    start_child,
    subscribe,
    terminate_child,
    which_children,
)

__all__ = [
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "which_children",
    "count_children",
    "get_childspec",
    "check_childspecs",
    "subscribe",
    "child_spec",
    "ChildSpec",
    "ChildInfo",
    "SupFlags",
    "SupervisorError",
]
