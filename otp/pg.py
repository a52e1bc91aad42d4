"""Process groups (OTP's ``pg``): ``otp.pg.join(group, pid)``, ``leave``,
``get_members``, ``which_groups``.  Members leave automatically when they
exit; reads come from the caller's replica once it reads often.

A group is a str, int, bytes or tuple of those, like a process name (OTP
allows any term; here a group holding another object raises
``otp.registry.InvalidKey``, because its ``__hash__`` and ``__eq__`` would
run inside the node's registry process).  Groups live in the registry
process's memory: they do not survive its restart."""

from .registry._names import pg_groups as which_groups
from .registry._names import pg_join as join
from .registry._names import pg_leave as leave
from .registry._names import pg_members as get_members

__all__ = ["join", "leave", "get_members", "which_groups"]
