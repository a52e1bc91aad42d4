"""Choosing the registry's backend from configuration.

The registry process is configured with a *spec* and calls :func:`open_backend`
once, at start.  A spec that names no known backend, or a backend that cannot
start, raises :class:`BackendUnavailable` there and then: the system we
replace shipped a "distributed" backend that quietly delegated to the local
one, and nobody noticed until it mattered.  There is no fallback here.

Accepted specs::

    "memory"                                  MemoryBackend
    ("memory",)  /  ("memory", {opts})
    ("sqlite", path)  /  ("sqlite", path, {opts})
    {"backend": "sqlite", "path": path, **opts}
    an object satisfying RegistryBackend      used as it is

``opts`` are the backend's keyword arguments (``mode``, ``busy_timeout``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .._pid import Pid
from ._backend import BackendUnavailable, BaseBackend, Mode, RegistryBackend
from ._memory import MemoryBackend
from ._sqlite import SQLiteBackend

__all__ = ["BACKENDS", "open_backend"]

#: Backend classes by configuration name.
BACKENDS: dict[str, type[BaseBackend]] = {"memory": MemoryBackend, "sqlite": SQLiteBackend}
# Which backends take the storage location as their first argument.
_NEEDS_PATH = {"sqlite"}


def open_backend(spec: Any, *, is_alive: Callable[[Pid], bool], mode: Mode | None = None) -> RegistryBackend:
    """A ready backend built from ``spec`` (see the module doc).

    ``mode``, when given, overrides any ``mode`` in the spec's options; for a
    backend instance it must agree with the instance's mode.  Raises
    :class:`BackendUnavailable` for an unknown name, a malformed spec, bad
    options, or a backend that fails to start."""
    if isinstance(spec, RegistryBackend) and not isinstance(spec, (str, tuple, Mapping)):
        if mode is not None and spec.mode != mode:
            raise BackendUnavailable(f"the configured backend {spec!r} is {spec.mode}, not {mode}")
        return spec
    name, args, opts = _parse(spec)
    if mode is not None:
        opts["mode"] = mode
    cls = BACKENDS.get(name)
    if cls is None:
        known = ", ".join(sorted(BACKENDS))
        raise BackendUnavailable(f"unknown registry backend {name!r} (known: {known})")
    if name in _NEEDS_PATH and len(args) != 1:
        raise BackendUnavailable(f"the {name} registry backend needs a path: ({name!r}, path)")
    if name not in _NEEDS_PATH and args:
        raise BackendUnavailable(f"the {name} registry backend takes no positional arguments, got {args!r}")
    try:
        return cls(*args, is_alive=is_alive, **opts)
    except TypeError as exc:  # an option the backend does not have
        raise BackendUnavailable(f"bad options for the {name} registry backend: {exc}") from exc
    except ValueError as exc:  # e.g. an unknown mode
        raise BackendUnavailable(f"bad configuration of the {name} registry backend: {exc}") from exc


def _parse(spec: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """``(name, positional arguments, options)`` of a spec, or :class:`BackendUnavailable`."""
    if isinstance(spec, str):
        return spec, [], {}
    opts: dict[str, Any]
    if isinstance(spec, Mapping):
        opts = dict(spec)
        name = opts.pop("backend", None)
        if not isinstance(name, str):
            raise BackendUnavailable(f"a backend mapping needs a 'backend' name, got {spec!r}")
        args = [opts.pop("path")] if "path" in opts else []
        return name, args, opts
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        name, *args = spec
        opts = {}
        if args and isinstance(args[-1], Mapping):
            opts = dict(args.pop())
        if any(not isinstance(a, (str, os.PathLike)) for a in args):
            raise BackendUnavailable(f"malformed registry backend spec {spec!r}")
        return name, args, opts
    raise BackendUnavailable(f"a registry backend spec is a name, a tuple, a mapping or a backend, not {spec!r}")
