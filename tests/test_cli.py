"""The command lines: ``mabeam demo`` (usage errors, a missing extra,
Ctrl-C) and the help of every option of mabeam and the stress tools."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import psutil
import pytest

from mabeam import __main__ as cli
from otp._oslib import fd_readable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_a_bad_demo_option_prints_the_demo_usage(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["demo", "--agents", "0"])
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err.startswith("usage: mabeam demo"), err
    assert "--agents: must be at least 1, not 0" in err


def _parsers(monkeypatch) -> dict:
    monkeypatch.syspath_prepend(ROOT)  # stress is run from a checkout, not installed
    from stress import __main__ as stress_main
    from stress import soak, storm

    top = cli.build_parser()
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        "mabeam": top,
        **{f"mabeam {name}": p for name, p in sub.choices.items()},
        "python -m stress": stress_main._parser(),
        "python -m stress.storm": storm._parser(),
        "python -m stress.soak": soak._parser(),
    }


def test_every_option_has_help_that_states_its_default(monkeypatch):
    missing = []
    for prog, parser in _parsers(monkeypatch).items():
        parser.format_help()  # every %(default)s expands
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            if not text or (action.option_strings and "default" not in text):
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}: {text!r}")
    assert not missing, "\n".join(missing)


def test_the_demo_without_its_extra_says_how_to_install_it(tmp_path):
    # sys.modules[name] = None is how Python marks a module as not
    # importable: find_spec answers None and an import fails, in this
    # interpreter and in any other started with the same environment
    # (the node's zygote), as when the extra is not installed.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['sklearn'] = None\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "mabeam", "demo", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(PYTHONPATH=path),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "mabeam demo needs its extra: pip install 'mabeam[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def base_dir():
    # Short: the node's socket paths must fit in 107 bytes.
    path = tempfile.mkdtemp(prefix="cli-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _start_demo(base_dir: str) -> subprocess.Popen:
    """The demo in its own session, as a terminal runs it: Ctrl-C is SIGINT
    to the whole foreground process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "mabeam", "demo", "--base-dir", base_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _running_processes(demo: subprocess.Popen) -> list[psutil.Process]:
    """Once the demo printed progress, its node and agents are up."""
    assert demo.stdout is not None
    assert "round 1/" in demo.stdout.readline()
    return psutil.Process(demo.pid).children(recursive=True)


def _assert_nothing_left(processes: list[psutil.Process], base_dir: str) -> None:
    """Every process of the demo exits (waited for on pidfds, which work for
    processes that are not our children) and the node's directory is gone."""
    for process in processes:
        try:
            fd = os.pidfd_open(process.pid)
        except ProcessLookupError:
            continue
        try:
            assert fd_readable(fd, 30), f"{process} is still running"
        finally:
            os.close(fd)
    assert os.listdir(base_dir) == []


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_with_one_line_and_leaves_nothing(base_dir):
    demo = _start_demo(base_dir)
    try:
        processes = _running_processes(demo)
        os.killpg(demo.pid, signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().startswith("interrupted; stopping") and err.count("\n") == 1, err
    _assert_nothing_left(processes, base_dir)


@pytest.mark.slow
def test_a_second_ctrl_c_while_stopping_exits_without_a_traceback(base_dir):
    demo = _start_demo(base_dir)
    try:
        processes = _running_processes(demo)
        os.killpg(demo.pid, signal.SIGINT)
        said = ""
        while "interrupted" not in said:  # it is stopping now
            said += demo.stderr.read(1) or pytest.fail(f"stderr closed after {said!r}")
        os.killpg(demo.pid, signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 130, said + err
    assert "Traceback" not in said + err
    _assert_nothing_left(processes, base_dir)
