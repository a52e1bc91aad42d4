"""Load-balancing strategies as pure functions over agent load records.

A strategy is a function of (load records, requirements, parameters) -> choice, kept
apart from any state: the process that owns the records (and monitors the agents, and
marks them ``alive=False`` on DOWN) calls it; tests call it directly.

Every strategy first filters with ``eligible``: the agent is alive, has *all* required
capabilities, and is not overloaded (cpu > 0.9, memory > 1 GiB or more than 10 active
tasks by default, all parameters).  When nothing is left, ``NoSuitableAgent`` says how
many agents were rejected for which reason.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from .._errors import MabeamError

__all__ = [
    "GIB",
    "LoadBalancingError",
    "AgentLoad",
    "OverloadThresholds",
    "ResourceWeights",
    "NoSuitableAgent",
    "InvalidLoadRecord",
    "Strategy",
    "Selection",
    "LoadStats",
    "is_overloaded",
    "eligible",
    "resource_score",
    "round_robin",
    "resource_aware",
    "capability_based",
    "performance_weighted",
    "select",
    "load_stats",
]

GIB = 1024**3


class LoadBalancingError(MabeamError):
    """Base class of the load-balancing errors."""


class InvalidLoadRecord(LoadBalancingError, ValueError):
    """A load record has a negative or non-finite figure; rejecting it beats mis-ranking agents."""


@dataclass(frozen=True)
class AgentLoad:
    """What the balancer knows about one agent.  ``cpu`` is a fraction of one core (0.9 = 90%)."""

    agent_id: str
    capabilities: frozenset[str] = frozenset()
    cpu: float = 0.0
    memory_bytes: int = 0
    active_tasks: int = 0
    avg_task_duration: float = 0.0
    alive: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        for name in ("cpu", "memory_bytes", "active_tasks", "avg_task_duration"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidLoadRecord(f"{self.agent_id!r}: {name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class OverloadThresholds:
    """An agent strictly above any of these is overloaded."""

    cpu: float = 0.9
    memory_bytes: int = GIB
    active_tasks: int = 10


@dataclass(frozen=True)
class ResourceWeights:
    """The resource score ``cpu*0.4 + memGiB*0.3 + tasks/10*0.3``, with every number a parameter."""

    cpu: float = 0.4
    memory: float = 0.3
    tasks: float = 0.3
    memory_unit: float = GIB
    tasks_unit: float = 10.0


class NoSuitableAgent(LoadBalancingError, LookupError):
    """No alive agent has the required capabilities and spare capacity; the counts say why."""

    def __init__(self, required: frozenset[str], *, total: int, dead: int, missing: int, overloaded: int) -> None:
        self.required, self.total, self.dead, self.missing, self.overloaded = required, total, dead, missing, overloaded
        super().__init__(
            f"no suitable agent for {sorted(required)}: {total} agents, {dead} dead, "
            f"{missing} lacking capabilities, {overloaded} overloaded"
        )


class Strategy(str, Enum):
    """How the balancer chooses among the eligible agents."""

    ROUND_ROBIN = "round_robin"
    RESOURCE_AWARE = "resource_aware"
    CAPABILITY_BASED = "capability_based"
    PERFORMANCE_WEIGHTED = "performance_weighted"


@dataclass(frozen=True)
class Selection:
    """The chosen agent and the round-robin cursor to pass to the next call."""

    agent: AgentLoad
    cursor: str | None = None


@dataclass(frozen=True)
class LoadStats:
    """Load figures for dashboards, computed from the records."""

    total_agents: int
    alive_agents: int
    available_agents: int
    overloaded_agents: int
    average_cpu: float
    average_memory_bytes: float


def is_overloaded(agent: AgentLoad, thresholds: OverloadThresholds = OverloadThresholds()) -> bool:
    """Whether the agent is strictly above any of the thresholds."""
    return (
        agent.cpu > thresholds.cpu
        or agent.memory_bytes > thresholds.memory_bytes
        or agent.active_tasks > thresholds.active_tasks
    )


def eligible(
    agents: Iterable[AgentLoad], required: Iterable[str] = (), thresholds: OverloadThresholds = OverloadThresholds()
) -> list[AgentLoad]:
    """Alive agents with all ``required`` capabilities and spare capacity, sorted by id.

    Sorting by id makes every strategy's tie-breaks deterministic, whatever the caller's order.
    Raises ``NoSuitableAgent`` when the list would be empty.
    """
    need = frozenset(required)
    agents = list(agents)
    dead = missing = overloaded = 0
    ok: list[AgentLoad] = []
    for agent in agents:
        if not agent.alive:
            dead += 1
        elif not need <= agent.capabilities:
            missing += 1
        elif is_overloaded(agent, thresholds):
            overloaded += 1
        else:
            ok.append(agent)
    if len({a.agent_id for a in agents}) != len(agents):
        raise InvalidLoadRecord("duplicate agent ids in the load records")
    if not ok:
        raise NoSuitableAgent(need, total=len(agents), dead=dead, missing=missing, overloaded=overloaded)
    return sorted(ok, key=lambda a: a.agent_id)


def resource_score(agent: AgentLoad, weights: ResourceWeights = ResourceWeights()) -> float:
    """Lower is less loaded."""
    return (
        agent.cpu * weights.cpu
        + agent.memory_bytes / weights.memory_unit * weights.memory
        + agent.active_tasks / weights.tasks_unit * weights.tasks
    )


def round_robin(
    agents: Iterable[AgentLoad],
    required: Iterable[str] = (),
    *,
    cursor: str | None = None,
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> Selection:
    """The first eligible agent whose id sorts after ``cursor``, wrapping around.

    A counter taken modulo the number of agents would shift whom the next task goes to on
    every join or leave.  A cursor that is the last chosen *id* is stable: agents joining or
    leaving elsewhere in the order do not change who comes next, and each eligible agent is
    chosen once per cycle.
    """
    pool = eligible(agents, required, thresholds)
    chosen = pool[0] if cursor is None else next((a for a in pool if a.agent_id > cursor), pool[0])
    return Selection(chosen, chosen.agent_id)


def resource_aware(
    agents: Iterable[AgentLoad],
    required: Iterable[str] = (),
    *,
    weights: ResourceWeights = ResourceWeights(),
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> AgentLoad:
    """The eligible agent with the lowest ``resource_score`` (ties: lowest id)."""
    return min(eligible(agents, required, thresholds), key=lambda a: resource_score(a, weights))


def capability_based(
    agents: Iterable[AgentLoad],
    required: Iterable[str] = (),
    *,
    preferred: Iterable[str] = (),
    weights: ResourceWeights = ResourceWeights(),
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> AgentLoad:
    """Among agents with all ``required`` capabilities, the one with the most ``preferred`` extras.

    (Counting matches against the required set would not discriminate: the filter has
    already made it equal for every candidate.)  Ties go to the lower resource score, then
    the lower id.
    """
    want = frozenset(preferred)
    return min(
        eligible(agents, required, thresholds), key=lambda a: (-len(a.capabilities & want), resource_score(a, weights))
    )


def performance_weighted(
    agents: Iterable[AgentLoad],
    required: Iterable[str] = (),
    *,
    rng: random.Random | None = None,
    min_duration: float = 1e-3,
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> AgentLoad:
    """The fastest agent (lowest average task duration), or a weighted draw if ``rng`` is given.

    Always picking the fastest piles every task onto one agent until it trips the overload
    filter; with ``rng`` the choice is random with weight ``1 / max(duration, min_duration)``,
    so faster agents get proportionally more work.  ``min_duration`` keeps an agent with no
    history (duration 0) from getting infinite weight.  Pass a seeded ``random.Random`` for
    reproducible choices.
    """
    if not min_duration > 0:
        raise ValueError(f"min_duration must be > 0, got {min_duration}")
    pool = eligible(agents, required, thresholds)
    if rng is None:
        return min(pool, key=lambda a: a.avg_task_duration)
    weights = [1.0 / max(a.avg_task_duration, min_duration) for a in pool]
    return rng.choices(pool, weights=weights, k=1)[0]


def select(
    strategy: Strategy | str,
    agents: Iterable[AgentLoad],
    required: Iterable[str] = (),
    *,
    cursor: str | None = None,
    preferred: Iterable[str] = (),
    rng: random.Random | None = None,
    weights: ResourceWeights = ResourceWeights(),
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> Selection:
    """One entry point for a balancer process whose strategy is configuration.

    The returned cursor is the new round-robin position for round robin, and the cursor
    passed in (unchanged) for the others, so a caller can always store ``selection.cursor``.
    """
    strategy = Strategy(strategy)
    if strategy is Strategy.ROUND_ROBIN:
        return round_robin(agents, required, cursor=cursor, thresholds=thresholds)
    if strategy is Strategy.RESOURCE_AWARE:
        agent = resource_aware(agents, required, weights=weights, thresholds=thresholds)
    elif strategy is Strategy.CAPABILITY_BASED:
        agent = capability_based(agents, required, preferred=preferred, weights=weights, thresholds=thresholds)
    else:
        agent = performance_weighted(agents, required, rng=rng, thresholds=thresholds)
    return Selection(agent, cursor)


def load_stats(agents: Sequence[AgentLoad], thresholds: OverloadThresholds = OverloadThresholds()) -> LoadStats:
    """Totals for dashboards; averages are over alive agents (0.0 when there are none)."""
    alive = [a for a in agents if a.alive]
    over = sum(1 for a in alive if is_overloaded(a, thresholds))
    n = len(alive)
    return LoadStats(
        total_agents=len(agents),
        alive_agents=n,
        available_agents=n - over,
        overloaded_agents=over,
        average_cpu=sum(a.cpu for a in alive) / n if n else 0.0,
        average_memory_bytes=sum(a.memory_bytes for a in alive) / n if n else 0.0,
    )
