"""Listeners of keyed registries (Elixir's ``Registry.start_link`` option
``listeners:``): ``Registered``/``Unregistered`` events for registrations,
unregistrations and the exit of a holder."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, recv, recv_tagged

import otp


def _is_event(msg: object) -> bool:
    return isinstance(msg, (otp.registry.Registered, otp.registry.Unregistered))


def _event():
    return recv(_is_event)


def _collector(parent: otp.Pid, name: str | None) -> None:
    """A listener that forwards every registry event to ``parent``."""
    if name is not None:
        otp.register(name)
    otp.send(parent, ("listening", otp.self()))
    while True:
        otp.send(parent, ("event", otp.receive(None, _is_event)))


def _register_then_wait(registry, key, value, parent: otp.Pid) -> None:
    otp.Registry.register(registry, key, value)
    otp.send(parent, ("registered", otp.self()))
    otp.receive()


def test_listener_receives_register_and_unregister(node):
    """Elixir's Registry listeners: ``{:register, registry, key, pid, value}``
    on ``Registry.register/3`` and ``{:unregister, registry, key, pid}`` on
    ``Registry.unregister/2``, with the registry's name."""
    me = otp.self()
    otp.Registry.start_link(keys="unique", name="reg", listeners=[me])
    otp.Registry.register("reg", "k", {"v": 1})
    assert _event() == otp.registry.Registered("reg", "k", me, {"v": 1})
    otp.Registry.unregister("reg", "k")
    assert _event() == otp.registry.Unregistered("reg", "k", me)
    otp.Registry.unregister("reg", "k")  # nothing held: no event
    otp.Registry.register("reg", "k2", None)
    assert _event() == otp.registry.Registered("reg", "k2", me, None)


def test_named_listeners_and_one_unregister_per_holder(node):
    """Elixir's listeners are named processes, each sent every event; in a
    duplicate registry ``Registry.unregister/2`` of a key the caller holds
    twice is one ``:unregister`` event."""
    me = otp.self()
    first = otp.spawn(_collector, me, "listener-a")
    second = otp.spawn(_collector, me, None)
    assert {recv_tagged("listening")[1], recv_tagged("listening")[1]} == {first, second}
    otp.Registry.start_link(keys="duplicate", name="topics", listeners=["listener-a", second])
    otp.Registry.register("topics", "news", 1)
    otp.Registry.register("topics", "news", 2)
    events = [recv_tagged("event")[1] for _ in range(4)]
    registered = [otp.registry.Registered("topics", "news", me, 1), otp.registry.Registered("topics", "news", me, 2)]
    assert sorted(events, key=repr) == sorted(registered * 2, key=repr)
    otp.Registry.unregister("topics", "news")
    events = [recv_tagged("event")[1] for _ in range(2)]
    assert events == [otp.registry.Unregistered("topics", "news", me)] * 2
    assert otp.Registry.lookup("topics", "news") == []


def test_unregister_event_when_the_holder_dies(node):
    """A holder's exit removes its keys (Elixir's Registry); here the
    listeners are told with ``Unregistered`` too, also for a SIGKILL."""
    me = otp.self()
    reg = otp.Registry.start_link(keys="unique", listeners=[me])
    holders = []
    for key in ("a", "b"):
        otp.spawn(_register_then_wait, reg, key, key.upper(), me)
        holders.append(recv_tagged("registered")[1])
    assert {_event(), _event()} == {
        otp.registry.Registered(reg, "a", holders[0], "A"),
        otp.registry.Registered(reg, "b", holders[1], "B"),
    }
    otp.exit(holders[0], "kill")
    assert _event() == otp.registry.Unregistered(reg, "a", holders[0])
    os.kill(holders[1].ospid, signal.SIGKILL)
    assert _event() == otp.registry.Unregistered(reg, "b", holders[1])


def test_unregister_event_even_after_a_lookup_dropped_the_dead_entry(node):
    """Elixir's Registry removes a dead holder's keys; the listener hears of
    it whichever the registry handles first: the holder's DOWN, or a new
    registration of the key that meets the dead holder (and drops its entry)."""
    me = otp.self()
    reg = otp.Registry.start_link(keys="unique", listeners=[me])
    otp.spawn(_register_then_wait, reg, "k", 1, me)
    holder = recv_tagged("registered")[1]
    assert _event() == otp.registry.Registered(reg, "k", holder, 1)
    ref = otp.monitor(holder)
    os.kill(holder.ospid, signal.SIGKILL)
    down_of(ref)
    # Registering the key again makes the backend meet the dead holder first.
    otp.Registry.register(reg, "k", 2)
    events = {_event(), _event()}
    assert events == {otp.registry.Unregistered(reg, "k", holder), otp.registry.Registered(reg, "k", me, 2)}


def test_dead_and_unnamed_listeners_are_skipped(node):
    """Elixir sends to each listener; here a listener that is dead, or a
    name nobody holds, misses the event and the registry goes on."""
    me = otp.self()
    dead = otp.spawn(lambda: None)
    ref = otp.monitor(dead)
    down_of(ref)
    otp.Registry.start_link(keys="unique", name="r", listeners=[dead, "nobody-here", me])
    otp.Registry.register("r", "k", 1)
    assert _event() == otp.registry.Registered("r", "k", me, 1)
    otp.spawn(_collector, me, "nobody-here")  # the name has a holder now: it gets the next events
    recv_tagged("listening")
    otp.Registry.register("r", "k2", 2)
    assert _event() == otp.registry.Registered("r", "k2", me, 2)
    assert recv_tagged("event")[1] == otp.registry.Registered("r", "k2", me, 2)


def test_listeners_must_be_pids_or_names(node):
    """Elixir's ``start_link`` raises ArgumentError unless listeners are
    named processes; here pids and names are accepted, anything else is a
    TypeError before anything starts."""
    for bad in ("just-a-string", [1.5], [otp.via("r", "k")], [["list"]]):
        with pytest.raises(TypeError):
            otp.Registry.start_link(listeners=bad)


def test_child_spec_passes_listeners(node):
    """Elixir's ``Registry.child_spec/1`` takes the same options as
    ``start_link``: a supervised registry tells its listeners too."""
    me = otp.self()
    spec = otp.Registry.child_spec(keys="unique", name="supervised", listeners=[me])
    otp.Supervisor.start_link([spec], strategy="one_for_one")
    otp.Registry.register("supervised", "k", 1)
    assert _event() == otp.registry.Registered("supervised", "k", me, 1)
