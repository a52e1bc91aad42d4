"""A gen_statem that reports every callback to a listener: the scripted
machine the gen_statem tests drive (tests/test_gen_statem*.py).  A module
of its own so that both test files share it and child processes of either
start method can import it by name."""

from __future__ import annotations

from helpers import recv

import otp
from otp._gen_statem import EventType, GenStatem, KeepStateAndData

ENTER = EventType.ENTER


class Recorder(GenStatem):
    """Reports every callback to ``listener`` as ``(state, event_type,
    content)``; casts and calls carry the result to return (a function of
    data, or a result), so each test scripts its own transitions."""

    callback_mode = "handle_event_function"
    state_enter = True

    def init(self, args):
        listener, state, actions = args
        return state, {"listener": listener}, actions

    def handle_event(self, event_type, content, state, data):
        otp.send(data["listener"], (state, event_type, content))
        if event_type == ENTER:
            script = data.get("on_enter", {}).get(state)
            return script(content) if script else KeepStateAndData()
        if isinstance(content, tuple) and content and content[0] == "do":
            return content[1](event_type, data)
        return KeepStateAndData()

    def terminate(self, reason, state, data):
        otp.send(data["listener"], ("terminate", reason, state, {k: v for k, v in data.items() if k != "on_enter"}))


class Plain(Recorder):
    """A Recorder without state enter calls."""

    state_enter = False


def seen(timeout: float = 10.0):
    return recv(lambda m: isinstance(m, tuple) and len(m) in (3, 4), timeout)
