"""The main job end to end: learner agents bid, train, vote; with a learner
SIGKILLed in the middle of a round, the run still completes."""

from __future__ import annotations

import os
import signal

import pytest

import mabeam
import otp
from mabeam.demo.run import DemoConfig, run


@pytest.fixture
def demo_node():
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with otp.Node(name="demo-test", preload=("mabeam.demo.learners", "sklearn.svm", "sklearn.model_selection")) as node:
        yield node


def test_demo_runs_and_the_vote_picks_a_trained_configuration(demo_node):
    progress = run(DemoConfig(agents=3, rounds=2, slots=2, seed=1))
    assert progress.phase == "done"
    assert len(progress.auctions) == 4 and all(a.winner is not None for a in progress.auctions)
    for auction in progress.auctions:  # Vickrey: the winner pays at most its own bid
        assert auction.price <= max(b.amount for b in auction.bids if b.bidder == auction.winner)
    assert len(progress.results) == 4
    assert progress.winner in progress.leaderboard(3)
    assert sum(progress.vote_counts.values()) == 3  # every learner voted
    assert 0.8 < progress.test_accuracy <= 1.0


def test_a_learner_killed_mid_run_is_restarted_and_the_run_completes(demo_node):
    killed = []

    def kill_once(progress):
        if progress.phase == "training" and progress.round == 1 and not killed:
            pid = mabeam.whereis_agent("learner-0")
            os.kill(pid.ospid, signal.SIGKILL)
            killed.append(pid)

    progress = run(DemoConfig(agents=3, rounds=3, slots=1, seed=2), kill_once)
    assert killed and progress.phase == "done"
    assert progress.agents["learner-0"]["restarts"] >= 1
    assert progress.winner is not None and progress.test_accuracy > 0.8
