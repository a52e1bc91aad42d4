"""The public names of ``otp`` and ``mabeam``: pinned here, importable, and
visible to the type checker (a name only ``setattr`` creates, or one
``__all__`` lists but the module does not define, fails)."""

from __future__ import annotations

import importlib
import os
import textwrap

import pytest

#: Every public package and its public names.  A change here is a change of
#: the public API: intended, and said in the README.
PUBLIC: dict[str, set[str]] = {}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _all(module_name: str) -> set[str]:
    return set(importlib.import_module(module_name).__all__)


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_names_are_pinned(module_name):
    assert _all(module_name) == PUBLIC[module_name]


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_public_name_exists_and_has_a_docstring_where_callable(module_name):
    module = importlib.import_module(module_name)
    missing_doc = []
    for name in sorted(PUBLIC[module_name]):
        obj = getattr(module, name)  # AttributeError: __all__ lists a name the module lacks
        if (callable(obj) or isinstance(obj, type)) and not (getattr(obj, "__doc__", None) or "").strip():
            missing_doc.append(name)
    assert not missing_doc, f"public callables without a docstring in {module_name}: {missing_doc}"


def test_the_type_checker_sees_every_public_name():
    mypy_api = pytest.importorskip("mypy.api")
    lines = []
    for module_name in sorted(PUBLIC):
        alias = module_name.replace(".", "_")
        lines.append(f"import {module_name} as {alias}")
        lines += [f"{alias}.{name}" for name in sorted(PUBLIC[module_name])]
    code = "\n".join(lines) + "\n"
    out, err, status = mypy_api.run(
        [
            "--config-file",
            os.path.join(ROOT, "setup.cfg"),
            "--follow-imports=silent",
            "--no-incremental",
            "-c",
            code,
        ]
    )
    assert status == 0, textwrap.indent(out + err, "  ")
