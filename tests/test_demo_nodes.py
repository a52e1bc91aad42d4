"""``python -m mabeam demo --nodes 3 --chaos``: learners on three nodes
(separate OS processes, tcp + CURVE on 127.0.0.1), one node SIGKILLed
during the run; the run completes, says where the lost learners went, and
leaves no process, node directory or key behind."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

import psutil
import pytest

pytest.importorskip("sklearn")

#: Seconds the whole run may take on a loaded machine (three nodes start,
#: each importing scikit-learn in its zygote).
RUN_TIMEOUT = 300


def _marked(marker: str) -> list[psutil.Process]:
    """Every process whose environment carries ``marker`` (all of the
    demo's processes inherit it, on every node)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("MABEAM_DEMO_TEST") == marker and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_demo_on_three_nodes_survives_the_loss_of_one():
    # Short paths: a node's ipc endpoints live under its base directory, and
    # pytest's tmp_path (under xdist especially) is too long for them.
    top = pathlib.Path(tempfile.mkdtemp(prefix="mbdemo-", dir="/tmp"))
    base_dir, tmp_dir = top / "nodes", top / "tmp"
    base_dir.mkdir()
    tmp_dir.mkdir()
    try:
        _run_and_check(base_dir, tmp_dir)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _run_and_check(base_dir: pathlib.Path, tmp_dir: pathlib.Path) -> None:
    marker = uuid.uuid4().hex
    env = dict(os.environ, MABEAM_DEMO_TEST=marker, TMPDIR=str(tmp_dir), COLUMNS="200")
    # Three slots a round: every learner trains, so that the chaos cannot
    # leave the vote without a trained configuration.
    argv = ["--nodes", "3", "--chaos", "--agents", "3", "--rounds", "2", "--slots", "3", "--base-dir", str(base_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mabeam", "demo", *argv], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    out = done.stdout
    assert done.returncode == 0, (out, done.stderr)
    assert "chaos: node mabeam-demo-2@127.0.0.1 SIGKILLed in round 1 (its learners: learner-1)" in out
    # learner-1's nodes are (2, 3, home): it goes to the next one up.
    assert "restarted: learner-1 -> mabeam-demo-3@127.0.0.1" in out
    assert "mabeam-demo@127.0.0.1, mabeam-demo-2@127.0.0.1, mabeam-demo-3@127.0.0.1" in out
    assert "voted winner" in out
    # Nothing left: no process of any node, no node directory, no key file.
    assert _marked(marker) == []
    assert list(base_dir.iterdir()) == []
    assert list(tmp_dir.iterdir()) == []


def test_demo_refuses_zero_nodes():
    done = subprocess.run(
        [sys.executable, "-m", "mabeam", "demo", "--nodes", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--nodes" in done.stderr
