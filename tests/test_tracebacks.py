"""Tracebacks of processes name the user's file and line, also for functions
and classes of a script (``__main__``), which travel by value; a failed
``init`` raises a StartError whose text carries the traceback taken in the
process that failed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import otp
from otp._reasons import Crash, format_reason

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import otp

    def boom(x):
        raise ValueError(f"boom {x}")  # BOOM LINE

    class Broken(otp.GenServer):
        def init(self, args):
            raise RuntimeError("init refused")  # INIT LINE

    if __name__ == "__main__":
        logging.basicConfig(filename=sys.argv[1], level=logging.WARNING)
        with otp.Node(start_method=sys.argv[2]):
            otp.trap_exit(True)
            pid = otp.spawn_link(boom, 1)
            print(otp.receive(10).reason.traceback)
            print("=" * 20)
            try:
                Broken.start(None)
            except otp.StartError as exc:
                print(exc)
            print("=" * 20)
            try:
                otp.Supervisor.start_link([Broken.child_spec(None, id="broken")])
            except otp.StartError as exc:
                print(exc)
    """
)


def _line_of(marker: str) -> int:
    return next(i for i, line in enumerate(SCRIPT.splitlines(), 1) if marker in line)


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_tracebacks_of_script_functions_name_the_script_and_line(tmp_path, method):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    log_file = tmp_path / "node.log"
    done = subprocess.run(
        [sys.executable, str(script), str(log_file), method], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    returned, started, supervised = done.stdout.split("=" * 20)
    boom = f'File "{script}", line {_line_of("BOOM LINE")}, in boom'
    init = f'File "{script}", line {_line_of("INIT LINE")}, in init'
    assert boom in returned and 'raise ValueError(f"boom {x}")' in returned, returned
    assert boom in log_file.read_text()  # the crash report
    assert init in started and "RuntimeError: init refused" in started, started
    assert init in supervised and "failed_to_start_child" in supervised, supervised


class Refuses(otp.GenServer):
    def init(self, args):
        raise KeyError(args)


def test_str_of_start_error_shows_where_init_raised(node):
    with pytest.raises(otp.StartError) as caught:
        Refuses.start("no such key")
    text = str(caught.value)
    line = Refuses.init.__code__.co_firstlineno + 1
    assert f'{__file__}", line {line}, in init' in text, text
    assert "KeyError: 'no such key'" in text
    assert isinstance(caught.value.reason, Crash)  # the term itself is unchanged


def test_format_reason_shows_every_nested_crash_and_plain_terms_as_repr():
    crash = Crash(
        "builtins.ValueError", "bad", 'Traceback (most recent call last):\n  File "x.py", line 3\nValueError: bad\n'
    )
    text = format_reason(("shutdown", ("failed_to_start_child", "w", crash)))
    assert text.startswith("('shutdown', ('failed_to_start_child', 'w', Crash(ValueError: bad)))")
    assert '      File "x.py", line 3' in text  # indented under its header
    assert format_reason("timeout") == "'timeout'"
    assert str(otp.StartError(("already_started", 1))) == "('already_started', 1)"
    assert Crash("builtins.OSError", "gone").format() == "builtins.OSError: gone"

    class BadRepr:
        def __repr__(self):
            raise ValueError("no repr")

    assert format_reason(BadRepr()).endswith("BadRepr object>")  # str(StartError) never raises
    loop: list = []
    loop.append(loop)  # a term that contains itself does not recurse forever
    assert format_reason(loop) == "[[...]]"
