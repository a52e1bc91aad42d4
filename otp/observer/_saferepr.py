"""``safe_repr``: text for any object without running its code.

A viewer shows states and exit reasons that hold user objects; their
``__repr__`` may block, loop, raise or print a gigabyte.  ``safe_repr``
calls no method an object's class defines: builtin scalars and containers
of exactly their builtin type are written out, and any other object as
``Class(attr=...)`` from its ``__dict__`` and slots, read through the
descriptors CPython itself defines (never a property, ``__getattr__`` or
``__repr__``).  The text stops at ``limit`` characters and ``depth``
levels, containers at ``items`` entries, and cycles show as ``...``.
"""

from __future__ import annotations

import enum
import types
from collections import deque
from typing import Any

from .._pid import Pid, Ref

__all__ = ["safe_repr", "DEFAULT_LIMIT"]

#: Characters of text ``safe_repr`` returns by default.
DEFAULT_LIMIT = 4000
_SCALARS = (type(None), bool, int, float, complex)
_DICT_OF: Any = type.__dict__["__dict__"]


class _Full(Exception):
    """The text reached its limit."""


class _Writer:
    __slots__ = ("parts", "size", "limit", "items", "seen")

    def __init__(self, limit: int, items: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.items = items
        self.seen: set[int] = set()

    def put(self, text: str) -> None:
        room = self.limit - self.size
        if len(text) > room:
            self.parts.append(text[: max(0, room)])
            self.size = self.limit
            raise _Full
        self.parts.append(text)
        self.size += len(text)


def safe_repr(obj: object, limit: int = DEFAULT_LIMIT, depth: int = 6, items: int = 50) -> str:
    """A ``repr``-like text of ``obj`` of at most ``limit`` characters (a
    cut text ends with ``...``), built without calling any method of a
    user's class (see the module docstring)."""
    w = _Writer(max(8, limit - 3), items)
    try:
        _write(w, obj, depth)
    except _Full:
        return "".join(w.parts) + "..."
    return "".join(w.parts)


def _write(w: _Writer, obj: object, depth: int) -> None:
    t = type(obj)
    if t in _SCALARS:
        if t is int and obj.bit_length() > 256:  # type: ignore[attr-defined]
            w.put(f"<int of {obj.bit_length()} bits>")  # type: ignore[attr-defined]
            return
        w.put(repr(obj))
        return
    if t is str:
        s: str = obj  # type: ignore[assignment]
        room = w.limit - w.size
        w.put(repr(s[: room + 2]) if len(s) > room else repr(s))
        return
    if t is bytes or t is bytearray:
        b: bytes = obj  # type: ignore[assignment]
        w.put(repr(b[: w.limit - w.size + 2]))
        return
    if t is Pid or t is Ref:
        w.put(repr(obj))  # ours: plain fields
        return
    if issubclass(t, enum.Enum):
        w.put(f"{t.__name__}.{_raw_attr(obj, '_name_')}")
        return
    if issubclass(t, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        w.put(f"<{t.__name__} {_qualname(obj)}>")
        return
    if depth <= 0:
        w.put(f"<{_class_name(t)}>")
        return
    key = id(obj)
    if key in w.seen:
        w.put("...")
        return
    w.seen.add(key)
    try:
        _write_compound(w, obj, t, depth)
    finally:
        w.seen.discard(key)


def _write_compound(w: _Writer, obj: Any, t: type, depth: int) -> None:
    if t is list or t is tuple or t is set or t is frozenset or t is deque:
        _write_sequence(w, obj, t, depth)
        return
    if t is dict:
        _write_dict(w, obj, depth)
        return
    if issubclass(t, tuple) and type(_class_attr(t, "_fields")) is tuple:  # a named tuple
        fields: Any = _class_attr(t, "_fields")
        _write_fields(w, _class_name(t), list(zip(fields, tuple.__iter__(obj))), depth)
        return
    if issubclass(t, BaseException):
        _write_fields(w, _class_name(t), [("", arg) for arg in BaseException.__getattribute__(obj, "args")], depth)
        return
    if issubclass(t, (list, tuple, set, frozenset, dict)):
        # A subclass of a builtin container: its items, read as the builtin's.
        base: Any = next(b for b in (dict, list, tuple, set, frozenset) if issubclass(t, b))
        w.put(f"{_class_name(t)}(")
        if base is dict:
            _write_dict(w, obj, depth)
        else:
            _write_sequence(w, obj, base, depth)
        w.put(")")
        return
    _write_fields(w, _class_name(t), _attributes(obj, t), depth)


def _write_sequence(w: _Writer, obj: Any, t: Any, depth: int) -> None:
    """``t`` is the builtin container type whose own methods read ``obj``."""
    size = t.__len__(obj)
    if t in (set, frozenset) and size == 0:
        w.put(f"{t.__name__}()")
        return
    opening, closing = {
        list: ("[", "]"),
        tuple: ("(", ")"),
        deque: ("deque([", "])"),
        frozenset: ("frozenset({", "})"),
    }.get(t, ("{", "}"))
    w.put(opening)
    for n, item in enumerate(t.__iter__(obj)):
        if n >= w.items:
            w.put(f", ... {size - n} more")
            break
        if n:
            w.put(", ")
        _write(w, item, depth - 1)
    if t is tuple and size == 1:
        w.put(",")
    w.put(closing)


def _write_dict(w: _Writer, obj: dict, depth: int) -> None:
    w.put("{")
    for n, (key, value) in enumerate(dict.items(obj)):
        if n >= w.items:
            w.put(f", ... {dict.__len__(obj) - n} more")
            break
        if n:
            w.put(", ")
        _write(w, key, depth - 1)
        w.put(": ")
        _write(w, value, depth - 1)
    w.put("}")


def _write_fields(w: _Writer, name: str, fields: list[tuple[str, object]], depth: int) -> None:
    w.put(f"{name}(")
    for n, (field, value) in enumerate(fields):
        if n >= w.items:
            w.put(f", ... {len(fields) - n} more")
            break
        if n:
            w.put(", ")
        if field:
            w.put(f"{field}=")
        _write(w, value, depth - 1)
    w.put(")")


def _attributes(obj: object, t: type) -> list[tuple[str, object]]:
    """(name, value) of ``obj``'s instance dict and its slots, read without
    running code of its class."""
    out: list[tuple[str, object]] = []
    try:
        d = object.__getattribute__(obj, "__dict__") if _has_plain_dict(t) else None
    except AttributeError:
        d = None
    if type(d) is dict:
        out.extend((str(k), v) for k, v in dict.items(d) if type(k) is str)
    for klass in type.__getattribute__(t, "__mro__"):
        for name, member in _DICT_OF.__get__(klass).items():
            if type(member) is types.MemberDescriptorType and name not in ("__weakref__",):
                try:
                    out.append((name, member.__get__(obj, t)))
                except AttributeError:  # an unset slot
                    continue
    return out


def _has_plain_dict(t: type) -> bool:
    """True if instances keep their attributes in CPython's own
    ``__dict__`` (a getset descriptor), not in a property of the class's."""
    for klass in type.__getattribute__(t, "__mro__"):
        member = _DICT_OF.__get__(klass).get("__dict__")
        if member is not None:
            return type(member) is types.GetSetDescriptorType
    return False


def _class_attr(t: type, name: str) -> object:
    for klass in type.__getattribute__(t, "__mro__"):
        d = _DICT_OF.__get__(klass)
        if name in d:
            return d[name]
    return None


def _raw_attr(obj: object, name: str) -> object:
    try:
        d = object.__getattribute__(obj, "__dict__")
        return dict.get(d, name, "?")
    except AttributeError:
        return "?"


def _class_name(t: type) -> str:
    name = type.__getattribute__(t, "__qualname__")
    return name if type(name) is str else "?"


def _qualname(obj: object) -> str:
    try:
        name = object.__getattribute__(obj, "__qualname__")
    except AttributeError:
        return "?"
    return name if type(name) is str else "?"
