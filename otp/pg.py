"""Process groups (OTP's ``pg``): ``otp.pg.join(group, pid)``, ``leave``,
``get_members``, ``which_groups``.  Members leave automatically when they
exit; reads come from the caller's replica once it reads often."""

from .registry._names import pg_groups as which_groups
from .registry._names import pg_join as join
from .registry._names import pg_leave as leave
from .registry._names import pg_members as get_members

__all__ = ["join", "leave", "get_members", "which_groups"]
