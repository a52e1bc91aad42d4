"""Panels: views a library adds to the observer without ``otp`` importing it.

A panel is a name and a *provider*, the importable ``"module:function"`` of
a function that takes no argument and returns what the view shows::

    {"tables": {"Agents": [{"id": "a1", "status": "running", "pid": pid}, ...]},
     "values": {"messages/s": 12.5, "restarts": 3},      # charted over time by the view
     "notes": ["quotas: not running"]}

Each key is optional.  A table is a list of flat records (a ``Pid`` shows
as a link to its drill-down; anything else not JSON is rendered by
:func:`safe_repr`); the first :data:`MAX_ROWS` rows of a table are kept.
``values`` are numbers the web view keeps a history of (one point per
read, while the panel is on screen) and draws as charts.

Why a provider is a name, not a function: it runs in a process of the
node other than the view's, which imports it, so a provider that blocks,
crashes or eats memory costs that process only: the view gets
:class:`PanelTimeout` (the process is killed) or :class:`PanelFailed` and
shows it in the panel.  :func:`read_panel` spawns a process per read; a web
server keeps one *runner* per panel instead (:func:`run_runner`, driven by
its bridge), which reads the panel again and again (a read a second while
the tab is open) without a fork and a fresh import of the provider's
modules each time, is killed when a read outlives its timeout (the next
read starts another), and exits after :data:`RUNNER_IDLE` quiet seconds.  It is also what lets an observer attached from another
shell (``python -m otp observer``) or from another node of the cluster show
the panels a program added.

Where panels are kept: one small file per panel in the node's directory
(``<node dir>/observer-panels/``), not in the collector, which exits when
nobody looks, so a panel is added once for the node's life, from any of
its processes, and read by any observer of the node.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _api, _process
from .._errors import OTPError, Timeout
from .._pid import Pid, Ref
from .._reasons import DOWN
from ._errors import InvalidProvider, PanelFailed, PanelTimeout, UnknownPanel
from ._json import pid_id, text

__all__ = [
    "PanelSpec",
    "add_panel",
    "remove_panel",
    "list_panels",
    "read_panel",
    "normalize",
    "find_panel",
    "run_runner",
    "is_answer",
    "RUN",
    "DEFAULT_TIMEOUT",
    "MAX_ROWS",
    "MAX_VALUES",
]

#: Seconds a provider may take by default.
DEFAULT_TIMEOUT = 3.0
#: The longest timeout a panel may ask for (a view waits on it).
MAX_TIMEOUT = 30.0
#: Rows kept of each table, values kept of a panel, text kept of a cell.
MAX_ROWS = 500
MAX_VALUES = 32
MAX_CELL = 300
_DIR = "observer-panels"
_ANSWER = "$observer_panel"
#: ``(RUN, token, provider)`` asks a runner for a read.
RUN = "$observer_panel_run"
#: Seconds a runner waits for its next read before it exits.
RUNNER_IDLE = 60.0


@dataclass(frozen=True)
class PanelSpec:
    """A panel as added: its ``name``, its ``provider`` (``"module:function"``)
    and the seconds it may take."""

    name: str
    provider: str
    timeout: float


def _panels_dir() -> str:
    return os.path.join(_process.current().node.dir, _DIR)


def _file(name: str) -> str:
    return os.path.join(_panels_dir(), name.encode().hex())


def resolve(provider: str) -> Callable[[], Any]:
    """The function ``provider`` (``"module:function"``) names, imported."""
    module, sep, attr = provider.partition(":")
    if not sep or not module or not attr:
        raise InvalidProvider(f"a provider is 'module:function', not {provider!r}")
    try:
        fn: Any = importlib.import_module(module)
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidProvider(f"cannot import the provider {provider!r}: {exc}") from exc
    if not callable(fn):
        raise InvalidProvider(f"the provider {provider!r} is not callable")
    return fn


def add_panel(name: str, provider: str, timeout: float = DEFAULT_TIMEOUT) -> PanelSpec:
    """Show ``provider``'s records as the panel ``name`` in every observer of
    this node (the web view gets a tab for it).  ``provider`` is checked to
    import here; adding a name again replaces its panel.  Raises
    :class:`InvalidProvider`."""
    if not isinstance(name, str) or not name.strip() or len(name) > 60:
        raise InvalidProvider(f"a panel's name is a non-empty str of at most 60 characters, not {name!r}")
    if not isinstance(provider, str):
        raise InvalidProvider(f"a provider is a 'module:function' str (it runs in another process), not {provider!r}")
    timeout = float(timeout)
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidProvider(f"a panel's timeout is in (0, {MAX_TIMEOUT}] seconds, not {timeout}")
    resolve(provider)
    spec = PanelSpec(name, provider, timeout)
    os.makedirs(_panels_dir(), mode=0o700, exist_ok=True)
    path = _file(name)
    scratch = f"{path}.{os.getpid()}.tmp"
    with open(scratch, "w") as f:
        json.dump({"name": name, "provider": provider, "timeout": timeout}, f)
    os.replace(scratch, path)  # readers see the old panel or the new one
    return spec


def remove_panel(name: str) -> bool:
    """Take the panel ``name`` away; False if there was none."""
    try:
        os.unlink(_file(name))
    except FileNotFoundError:
        return False
    return True


def list_panels() -> list[PanelSpec]:
    """The panels added on this node, by name."""
    try:
        entries = sorted(os.listdir(_panels_dir()))
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        if entry.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(_panels_dir(), entry)) as f:
                data = json.load(f)
            out.append(PanelSpec(str(data["name"]), str(data["provider"]), float(data["timeout"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or not ours
    return sorted(out, key=lambda s: s.name)


def find_panel(name: str) -> PanelSpec:
    """The panel ``name`` of this node; :class:`UnknownPanel` if none."""
    for spec in list_panels():
        if spec.name == name:
            return spec
    raise UnknownPanel(f"no panel {name!r} on this node")


# ------------------------------------------------------------------ reading


def read_panel(name: str) -> dict[str, Any]:
    """Run the panel ``name``'s provider in a process of its own and return
    what it gave, normalized (see :func:`normalize`).  Raises
    :class:`UnknownPanel`, :class:`PanelTimeout` (the provider's process was
    killed) or :class:`PanelFailed` (it raised, or returned no panel)."""
    spec = find_panel(name)
    token = _api.make_ref()
    pid, mref = _api.spawn_monitor(_run_provider, _api.self_(), token, spec.provider)

    def answer(m: object) -> bool:
        return (type(m) is tuple and len(m) == 4 and m[0] == _ANSWER and m[1] == token) or (
            isinstance(m, DOWN) and m.ref == mref
        )

    try:
        msg = _api.receive(spec.timeout, answer)
    except Timeout:
        _api.exit(pid, "kill")
        _api.receive(None, lambda m: isinstance(m, DOWN) and m.ref == mref)
        _drain(token)  # an answer sent just before the kill
        raise PanelTimeout(f"the provider {spec.provider} did not answer within {spec.timeout:g}s") from None
    if isinstance(msg, DOWN):
        raise PanelFailed(f"the provider's process exited: {text(msg.reason)}")
    _api.demonitor(mref, flush=True)
    ok, value = msg[2], msg[3]
    if not ok:
        raise PanelFailed(value)
    return value


def is_answer(msg: object) -> bool:
    """Whether ``msg`` is a provider's answer ``(tag, token, ok, value)``."""
    return type(msg) is tuple and len(msg) == 4 and msg[0] == _ANSWER


def run_runner(owner: Pid) -> None:
    """Body of a panel runner: read panels for ``owner`` (``(RUN, token,
    provider)`` messages, answered as :func:`read_panel`'s process answers)
    until ``owner`` exits or nobody asks for :data:`RUNNER_IDLE` seconds."""
    ref = _api.monitor(owner)

    def wanted(m: object) -> bool:
        return (type(m) is tuple and len(m) == 3 and m[0] == RUN) or (isinstance(m, DOWN) and m.ref == ref)

    while True:
        try:
            msg = _api.receive(RUNNER_IDLE, wanted)
        except Timeout:
            return
        if isinstance(msg, DOWN):
            return
        _run_provider(owner, msg[1], msg[2])


def _drain(token: Ref) -> None:
    try:
        _api.receive(0, lambda m: type(m) is tuple and len(m) == 4 and m[0] == _ANSWER and m[1] == token)
    except Timeout:
        pass


def _run_provider(reply_to: Pid, token: Ref, provider: str) -> None:
    """Body of a provider's process: call it, normalize here (so a value that
    cannot be rendered costs this process), send the outcome back."""
    try:
        outcome: tuple[bool, Any] = (True, normalize(resolve(provider)()))
    except OTPError as exc:
        outcome = (False, f"{type(exc).__name__}: {text(str(exc))}")
    except Exception as exc:  # noqa: BLE001 - a provider's bug is shown in its panel
        outcome = (False, f"the provider raised {type(exc).__name__}: {text(str(exc))}")
    _api.send(reply_to, (_ANSWER, token, *outcome))


def _cell(value: object) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Pid):
        return {"$pid": pid_id(value), "node": value.node, "ospid": value.ospid}
    if isinstance(value, str):
        return value if len(value) <= MAX_CELL else value[: MAX_CELL - 3] + "..."
    return text(value) if not isinstance(value, (list, tuple, set, frozenset)) else _seq(value)


def _seq(value: Any) -> str | None:
    items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
    if all(isinstance(v, str) for v in items):
        joined = ", ".join(items)
        return joined if len(joined) <= MAX_CELL else joined[: MAX_CELL - 3] + "..."
    return text(value)


def normalize(value: object) -> dict[str, Any]:
    """A provider's value as the view's JSON: ``tables`` (title -> rows of
    cells), ``values`` (name -> finite number), ``notes`` (str), ``cut``
    (title -> rows left out).  PanelFailed for a value that is no panel."""
    if not isinstance(value, dict):
        raise PanelFailed(f"a provider returns a dict (tables, values, notes), not {type(value).__name__}")
    unknown = set(value) - {"tables", "values", "notes"}
    if unknown:
        raise PanelFailed(f"unknown keys in a panel: {sorted(map(str, unknown))}")
    tables: dict[str, list[dict[str, Any]]] = {}
    cut: dict[str, int] = {}
    for title, rows in dict(value.get("tables") or {}).items():
        if not isinstance(rows, (list, tuple)):
            raise PanelFailed(f"the table {title!r} is a list of records, not {type(rows).__name__}")
        kept = []
        for row in rows[:MAX_ROWS]:
            if not isinstance(row, dict):
                raise PanelFailed(f"a row of the table {title!r} is a dict, not {type(row).__name__}")
            kept.append({str(k): _cell(v) for k, v in row.items()})
        tables[str(title)] = kept
        if len(rows) > MAX_ROWS:
            cut[str(title)] = len(rows) - MAX_ROWS
    values: dict[str, float] = {}
    for key, number in list(dict(value.get("values") or {}).items())[:MAX_VALUES]:
        if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
            values[str(key)] = float(number)
    notes = [str(n)[:MAX_CELL] for n in (value.get("notes") or ())][:20]
    return {"tables": tables, "values": values, "notes": notes, "cut": cut}
