"""The hyperparameter-search run: rounds of auctions, training and learning,
then a vote on the winning configuration.

Per round, ``slots`` training slots are sold in sealed-bid second-price
(Vickrey) auctions run by auction processes under the economics supervisor;
each learner bids from its own estimate, the winners pay the second price
from their budgets and train one configuration each (a real 3-fold
cross-validation, concurrently, in their own processes); the results are
published on a topic every learner listens to.  At the end the learners vote
on the best three configurations (each evaluates them on its own held-out
sample), weighted by their expertise, and the chosen one is trained on the
whole training set and scored on the test set.

With ``chaos``, a chaos process SIGKILLs a random learner every one to three
seconds; the agent supervisor restarts it, the run goes on, and the table
shows the restarts.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import mabeam
import otp

from .learners import FAMILIES, Learner, build_model, load_data

__all__ = ["DemoConfig", "run"]

SCORES_TOPIC = "mabeam.demo.scores"


@dataclass
class DemoConfig:
    agents: int = 4
    rounds: int = 6
    slots: int = 2
    budget: float = 100.0
    chaos: bool = False
    seed: int = 0
    timeout: float = 30.0


@dataclass
class Progress:
    """What the display shows; updated by the run."""

    config: DemoConfig
    round: int = 0
    phase: str = "starting"
    results: list = field(default_factory=list)
    auctions: list = field(default_factory=list)
    kills: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    agents: dict = field(default_factory=dict)  # id -> record fields
    winner: dict | None = None
    vote: Any = None
    vote_counts: dict = field(default_factory=dict)  # candidate index -> votes
    test_accuracy: float | None = None
    started: float = field(default_factory=time.monotonic)

    def leaderboard(self, n: int = 5) -> list:
        return sorted(self.results, key=lambda r: -r["score"])[:n]


def chaos_monkey(parent: otp.Pid, agent_ids: list, seed: int) -> None:
    """Kill a random running learner every 1-3 s until told to stop."""
    rng = random.Random(seed)
    while True:
        try:
            otp.receive(rng.uniform(1.0, 3.0), lambda m: m == "stop")
            return
        except otp.Timeout:
            pass
        victim = rng.choice(agent_ids)
        pid = mabeam.agent_pid(victim)
        if pid is not None:
            os.kill(pid.ospid, signal.SIGKILL)
            otp.send(parent, ("$chaos", victim, pid))


def _refresh_agents(progress: Progress) -> None:
    for record in mabeam.list_agents():
        progress.agents[record.agent_id] = {
            "status": record.status,
            "restarts": record.restarts,
            "family": record.config.args["family"],
        }


def _sell_slot(ids: list, round_number: int, slot: int, timeout: float) -> dict:
    from mabeam import economics

    auction = economics.create_auction(
        "vickrey", item=f"slot-{round_number}-{slot}", reserve=1.0, participants=ids, bid_timeout=timeout
    )
    return economics.run(auction, timeout=timeout + 5)


def _vote(ids: list, candidates: list, timeout: float) -> Any:
    """Every learner votes for the index of the candidate that scores best
    on its own held-out sample (its ``handle_vote``)."""
    from mabeam import coordination

    return coordination.consensus(ids, {"candidates": candidates}, method="majority", timeout=timeout)


def run(config: DemoConfig, display=None) -> Progress:
    """Run the search on the current node; returns the final progress."""
    progress = Progress(config)
    show = display or (lambda p: None)
    otp.trap_exit(True)
    app = mabeam.start(agent_intensity=1000, agent_period=10.0)
    ids = [f"learner-{i}" for i in range(config.agents)]
    for i, agent_id in enumerate(ids):
        family = FAMILIES[i % len(FAMILIES)]
        args = {"family": family, "seed": config.seed * 100 + i, "budget": config.budget}
        mabeam.register_agent(
            mabeam.AgentConfig(agent_id, Learner, args=args, capabilities={family}, metadata={"family": family})
        )
    for agent_id in ids:
        mabeam.start_agent(agent_id)
    _refresh_agents(progress)
    mabeam.subscribe(SCORES_TOPIC)  # we hear the scores too (kept in order)
    chaos = otp.spawn_link(chaos_monkey, otp.self(), ids, config.seed) if config.chaos else None
    try:
        for round_number in range(1, config.rounds + 1):
            progress.round, progress.phase = round_number, "auction"
            show(progress)
            winners = []
            for slot in range(config.slots):
                bidders = [a for a in ids if a not in winners]  # one slot per learner per round
                if not bidders:
                    break
                result = _sell_slot(bidders, round_number, slot, config.timeout)
                progress.auctions.append(result)
                if result.winner is not None and result.winner not in winners:
                    winners.append(result.winner)
                    try:
                        mabeam.request(result.winner, ("charge", result.price), timeout=config.timeout)
                    except (mabeam.CommsError, mabeam.AgentError) as exc:
                        progress.failures.append((round_number, result.winner, "charge", exc))
            progress.phase = "training"
            show(progress)
            outcomes = mabeam.broadcast(winners, ("train", round_number), timeout=config.timeout)
            fresh = []
            for agent_id, (status, value) in zip(winners, outcomes):
                if status == "ok":
                    fresh.append(value)
                else:
                    progress.failures.append((round_number, agent_id, "train", value))
            progress.results.extend(fresh)
            mabeam.publish(SCORES_TOPIC, fresh)
            _drain_chaos(progress)
            _refresh_agents(progress)
            show(progress)
        progress.phase = "voting"
        show(progress)
        _final_vote(progress, ids, config)
    finally:
        if chaos is not None:
            ref = otp.monitor(chaos)
            otp.unlink(chaos)
            otp.send(chaos, "stop")
            otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        _drain_chaos(progress)
        _refresh_agents(progress)
        mabeam.stop(app)
    progress.phase = "done"
    show(progress)
    return progress


def _drain_chaos(progress: Progress) -> None:
    while True:
        try:
            msg = otp.receive(0, lambda m: type(m) is tuple and m and m[0] == "$chaos")
        except otp.Timeout:
            return
        progress.kills.append(msg[1])


def _final_vote(progress: Progress, ids: list, config: DemoConfig) -> None:
    candidates = progress.leaderboard(3)
    if not candidates:
        raise RuntimeError("no configuration was trained")
    outcome = _vote(ids, [{"family": c["family"], "params": c["params"]} for c in candidates], config.timeout)
    progress.vote = outcome
    counts = dict(outcome.tally.counts) if outcome.tally is not None else {}
    if outcome.reached:
        choice = outcome.decision
    elif counts:  # no strict majority: the most votes, then the better CV score
        choice = min(counts, key=lambda i: (-counts[i], i))
    else:  # no vote came back at all
        choice = 0
    progress.winner = candidates[choice]
    progress.vote_counts = {i: counts.get(i, 0) for i in range(len(candidates))}
    x_train, x_test, y_train, y_test = load_data(0)
    model = build_model(progress.winner["family"], progress.winner["params"]).fit(x_train, y_train)
    progress.test_accuracy = float(model.score(x_test, y_test))
