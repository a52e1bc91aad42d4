"""README's examples run, and print what their comments say.

Each example is taken from README.md as it stands (the first ``python``
block under its heading), written to a script in a temporary directory and
run in its own interpreter, as a reader would run it.  A ``print(...)``
line that ends in a comment states what it prints: the comment's text,
up to the first ``: ``, `` (`` or ``; `` (what follows explains it) and
up to a ``...`` (where the rest is elided), must appear in that output
line.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: Headings whose first python block is a complete program.
EXAMPLES = [
    "## A first look",
    "## MABEAM (`mabeam`)",
    "### Coordination sessions: hosts",
    "### Byzantine agreement among the agents",
    "### Auctions and markets: hosts",
]


def example(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no python block under {heading!r}"
    return block.group(1)


def expectations(code: str) -> list[str | None]:
    """Per print line, in order: the text its comment promises (None if
    the line promises nothing)."""
    found: list[str | None] = []
    for line in code.splitlines():
        if "print(" not in line:
            continue
        comment = line.split("#", 1)[1].strip() if "#" in line else None
        if comment:  # what is printed comes first; after ": ", " (" or "; " the words explain it
            comment = re.split(r":\s|\s\(|;\s", comment)[0].split("...")[0].strip()
        found.append(comment or None)
    return found


@pytest.mark.parametrize("heading", EXAMPLES)
def test_readme_example_prints_what_it_says(tmp_path, heading):
    code = example(heading)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    promised = expectations(code)
    assert len(lines) == len(promised), (lines, promised)
    for line, want in zip(lines, promised):
        if want:
            assert want in line, (line, want)
