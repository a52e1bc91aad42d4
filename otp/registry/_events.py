"""The messages a registry process sends to processes that asked for them.

Keyed registries tell their *listeners* (``otp.Registry.start_link(...,
listeners=[...])``, Elixir's ``:listeners`` option) of every registration
and unregistration: :class:`Registered` and :class:`Unregistered`, Elixir's
``{:register, registry, key, pid, value}`` and ``{:unregister, registry,
key, pid}``.

Process-group scopes tell the processes that monitor them (``otp.pg.monitor``,
``otp.pg.monitor_scope``) of joins and leaves: :class:`PgJoin` and
:class:`PgLeave`, OTP's ``{Ref, join, Group, Pids}`` and ``{Ref, leave,
Group, Pids}``."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._pid import Pid, Ref

__all__ = ["Registered", "Unregistered", "RegistryEvent", "PgJoin", "PgLeave", "PgEvent"]


class Registered(NamedTuple):
    """``pid`` registered ``key`` with ``value`` in ``registry`` (the
    registry's name, or its pid when it was started without one)."""

    registry: Any
    key: Any
    pid: Pid
    value: Any


class Unregistered(NamedTuple):
    """``pid`` no longer holds ``key`` in ``registry``: it unregistered the
    key, or it exited."""

    registry: Any
    key: Any
    pid: Pid


#: What a keyed registry's listener receives.
RegistryEvent = Registered | Unregistered


class PgJoin(NamedTuple):
    """``pids`` joined ``group`` (a pid twice if it joined twice); ``ref``
    is what ``otp.pg.monitor``/``monitor_scope`` returned."""

    ref: Ref
    group: Any
    pids: list[Pid]


class PgLeave(NamedTuple):
    """``pids`` left ``group`` once each, by ``leave`` or by exiting."""

    ref: Ref
    group: Any
    pids: list[Pid]


#: What a process monitoring a pg scope or group receives.
PgEvent = PgJoin | PgLeave
