"""The hyperparameter-search run: rounds of auctions, training and learning,
then a vote on the winning configuration.

Per round, ``slots`` training slots are sold in sealed-bid second-price
(Vickrey) auctions held by the economics hosts;
each learner bids from its own estimate, the winners pay the second price
from their budgets and train one configuration each (a real 3-fold
cross-validation, concurrently, in their own processes); the results are
published on a topic every learner listens to.  At the end the learners vote
on the best three configurations (each evaluates them on its own held-out
sample), weighted by their expertise, and the chosen one is trained on the
whole training set and scored on the test set.

With ``chaos``, a chaos process SIGKILLs a random learner every one to three
seconds; the agent registry restarts it, the run goes on, and the table
shows the restarts.

On several nodes (``nodes``, a :class:`Cluster`: ``mabeam demo --nodes N``)
the learners are placed round-robin on them, each with the other nodes as
the next places to run in order (``AgentConfig.node``); with ``chaos`` the
run also SIGKILLs a whole node once, as its middle round's training starts
(the first extra node: it holds learners): its learners are lost with
``'noconnection'``, restarted on the next of their nodes that is up, and
the run goes on without it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import mabeam
import otp
from mabeam import coordination, economics
from mabeam.coordination.voting import Tally

from .learners import FAMILIES, Learner, build_model, load_data

__all__ = ["DemoConfig", "Cluster", "NodeKill", "run"]

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


class Cluster(Protocol):
    """The nodes a run places its learners on (:class:`mabeam.demo.nodes.DemoNodes`)."""

    @property
    def names(self) -> list[str]:
        """Every node, the one the run is on first."""
        ...

    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` (not the run's own)."""
        ...


@dataclass
class NodeKill:
    """The chaos SIGKILLed ``node`` in round ``round``; ``lost`` were its
    learners, ``now`` says where each runs at the end (None: nowhere)."""

    node: str
    round: int
    lost: list[Hashable]
    now: dict[Hashable, str | None] = field(default_factory=dict)


class Failure(NamedTuple):
    """A request to a learner that got no answer (the run tolerates it)."""

    round: int
    agent_id: Hashable
    what: str
    error: Exception


@dataclass
class Progress:
    """What the display shows; updated by the run."""

    config: DemoConfig
    round: int = 0
    phase: str = "starting"
    #: Every training's result: family, params, score, agent, round, seconds.
    results: list[dict[str, Any]] = field(default_factory=list)
    auctions: list[economics.AuctionOutcome] = field(default_factory=list)
    kills: list[Hashable] = field(default_factory=list)
    node_kills: list[NodeKill] = field(default_factory=list)
    #: The nodes the learners run on (one: this node alone).
    nodes: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    #: Agent id -> its record's status, restarts, family and node.
    agents: dict[Hashable, dict[str, Any]] = field(default_factory=dict)
    winner: dict[str, Any] | None = None
    vote: coordination.ConsensusResult | None = None
    vote_counts: dict[int, int] = field(default_factory=dict)  # candidate index -> votes
    test_accuracy: float | None = None
    started: float = field(default_factory=time.monotonic)

    def leaderboard(self, n: int = 5) -> list[dict[str, Any]]:
        """The ``n`` best results, best first."""
        return sorted(self.results, key=lambda r: -r["score"])[:n]


#: What the run calls with the progress after each step (the display).
Show = Callable[[Progress], None]


class Killed(NamedTuple):
    """The chaos process SIGKILLed ``agent_id``'s process ``pid``."""

    agent_id: Hashable
    pid: otp.Pid


def chaos_monkey(parent: otp.Pid, agent_ids: list[Hashable], seed: int) -> None:
    """Kill a random running learner every 1-3 s until told to stop."""
    rng = random.Random(seed)
    while True:
        try:
            otp.receive(rng.uniform(1.0, 3.0), lambda m: m == "stop")
            return
        except otp.Timeout:
            pass
        victim = rng.choice(agent_ids)
        pid = mabeam.whereis_agent(victim)
        if pid is not None:
            otp.exit(pid, "kill")  # SIGKILL, by the gateway of its node for a learner of another node
            otp.send(parent, Killed(victim, pid))


def _refresh_agents(progress: Progress) -> None:
    for record in mabeam.list_agents():
        progress.agents[record.agent_id] = {
            "status": record.status,
            "restarts": record.restarts,
            "family": record.config.args["family"],
            "node": record.node,
        }
    for kill in progress.node_kills:
        kill.now = {agent_id: progress.agents[agent_id]["node"] for agent_id in kill.lost}


def _placement(nodes: list[str], i: int) -> tuple[str, ...] | None:
    """Learner ``i``'s nodes: round-robin, then the others in order (None:
    a run on this node alone)."""
    if len(nodes) < 2:
        return None
    first = i % len(nodes)
    return tuple(nodes[first:] + nodes[:first])


def _kill_node(progress: Progress, cluster: Cluster, round_number: int) -> None:
    """The chaos's SIGKILL of a whole node: the first extra node."""
    node = progress.nodes[1]
    lost = [agent_id for agent_id, info in progress.agents.items() if info["node"] == node]
    cluster.kill(node)
    progress.node_kills.append(NodeKill(node, round_number, lost))


def _sell_slot(ids: list[Hashable], round_number: int, slot: int, timeout: float) -> economics.AuctionOutcome:
    auction = economics.create_auction(
        "vickrey", item=f"slot-{round_number}-{slot}", reserve=1.0, participants=ids, bid_timeout=timeout
    )
    return economics.run(auction, timeout=timeout + 5)


def _vote(ids: list[Hashable], candidates: list[dict[str, Any]], timeout: float) -> coordination.ConsensusResult:
    """Every learner votes for the index of the candidate that scores best
    on its own held-out sample (its ``handle_vote``)."""
    return coordination.run_consensus(ids, {"candidates": candidates}, method="majority", timeout=timeout)


def run(config: DemoConfig, display: Show | None = None, cluster: Cluster | None = None) -> Progress:
    """Run the search from the current node, its learners on the nodes of
    ``cluster`` (None: on this node); returns the final progress."""
    progress = Progress(config)
    progress.nodes = list(cluster.names) if cluster is not None else [otp.node()]
    show = display or (lambda p: None)
    otp.trap_exit(True)
    app = mabeam.start(agent_intensity=1000, agent_period=10.0)
    ids: list[Hashable] = [f"learner-{i}" for i in range(config.agents)]
    for i, agent_id in enumerate(ids):
        family = FAMILIES[i % len(FAMILIES)]
        args = {"family": family, "seed": config.seed * 100 + i, "budget": config.budget}
        mabeam.register_agent(
            mabeam.AgentConfig(
                agent_id,
                Learner,
                args=args,
                capabilities={family},
                metadata={"family": family},
                node=_placement(progress.nodes, i),
            )
        )
    for agent_id in ids:
        mabeam.start_agent(agent_id)
    _refresh_agents(progress)
    mabeam.subscribe(SCORES_TOPIC)  # we hear the scores too (kept in order)
    chaos = otp.spawn_link(chaos_monkey, otp.self(), ids, config.seed) if config.chaos else None
    middle = (config.rounds + 1) // 2
    try:
        for round_number in range(1, config.rounds + 1):
            progress.round, progress.phase = round_number, "auction"
            show(progress)
            winners: list[Hashable] = []
            for slot in range(config.slots):
                bidders = [a for a in ids if a not in winners]  # one slot per learner per round
                if not bidders:
                    break
                try:
                    result = _sell_slot(bidders, round_number, slot, config.timeout)
                except economics.BiddersExited as exc:  # chaos killed every bidder that could win
                    progress.failures.append(Failure(round_number, None, "auction", exc))
                    continue
                progress.auctions.append(result)
                if result.winner is not None and result.winner not in winners:
                    winners.append(result.winner)
                    try:
                        mabeam.request(result.winner, ("charge", result.price), timeout=config.timeout)
                    except (mabeam.CommsError, mabeam.AgentError) as exc:
                        progress.failures.append(Failure(round_number, result.winner, "charge", exc))
            progress.phase = "training"
            if config.chaos and cluster is not None and not progress.node_kills and round_number >= middle:
                _kill_node(progress, cluster, round_number)
            show(progress)
            outcomes = mabeam.broadcast(winners, ("train", round_number), timeout=config.timeout)
            fresh: list[dict[str, Any]] = []
            for agent_id, (_, value) in zip(winners, outcomes):
                if isinstance(value, Exception):  # the outcome is an error: a training returns a dict
                    progress.failures.append(Failure(round_number, agent_id, "train", value))
                else:
                    fresh.append(value)
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
            _await_restarts(ids, config.timeout)
        _drain_chaos(progress)
        _refresh_agents(progress)
        mabeam.stop(app)
    progress.phase = "done"
    show(progress)
    return progress


def _await_restarts(ids: list[Hashable], timeout: float) -> None:
    """Wait (``timeout`` seconds at most each) for the learners the chaos
    left crashed to run again, so that the table says where they run."""
    for agent_id in ids:
        try:
            if mabeam.get_agent_status(agent_id) == "crashed":
                mabeam.await_status(agent_id, "running", timeout=timeout)
        except (otp.CallTimeout, mabeam.MabeamError):
            pass  # the table shows it as it is


def _drain_chaos(progress: Progress) -> None:
    while True:
        try:
            killed = otp.receive(0, lambda m: isinstance(m, Killed))
        except otp.Timeout:
            return
        progress.kills.append(killed.agent_id)


def _final_vote(progress: Progress, ids: list[Hashable], config: DemoConfig) -> None:
    candidates = progress.leaderboard(3)
    if not candidates:
        raise RuntimeError("no configuration was trained")
    outcome = _vote(ids, [{"family": c["family"], "params": c["params"]} for c in candidates], config.timeout)
    progress.vote = outcome
    # A majority vote's tally (None when no vote came back); a learner votes a candidate's index.
    tally = outcome.tally.counts if isinstance(outcome.tally, Tally) else {}
    counts = {index: n for index, n in tally.items() if isinstance(index, int)}
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
