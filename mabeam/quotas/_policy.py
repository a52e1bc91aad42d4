"""Resource quotas and the per-agent escalation state machine.

This module is the decision logic the quota manager calls once per measurement:

    escalator = Escalator("agent-7", tier("standard"))
    decision = escalator.observe(now, rss_bytes, cpu_percent)   # -> actions to carry out

It reads no clock and touches no process, so every rule below is tested by replaying
timestamps.  Rules (all numbers are ``EscalationPolicy``/``ResourceLimit`` parameters):

* A resource is in one of four zones: ``NONE`` (usage <= soft), ``SOFT`` (soft < usage <=
  hard), ``HARD`` (hard < usage <= burst) and ``BURST`` (usage > burst, where burst defaults
  to 1.5 x hard).  The agent's zone is the worst over RSS and CPU.
* An *episode* starts with the first measurement above soft.  Stages are reached in order,
  counted from the episode start: ``Warn`` at once, ``Throttle`` after 30 s, ``Suspend``
  after 5 min, ``Terminate`` after 10 min.  When measurements are sparse, one observation
  emits every stage it passes, in order: a stage is never skipped.
* Above hard the stage is at least the limit's ``hard_stage`` (the per-resource
  enforcement action), reached through the intermediate stages in the same step.
* Above burst the agent is terminated at once with no grace: the one documented skip.
* De-escalation: once usage is back at or below soft for ``calm_period`` (60 s), ``Resume``
  is emitted and the stage returns to ``NORMAL``.  A dip shorter than that does not reset
  the episode clock, so an agent hovering at its soft limit cannot dodge escalation.
* Nothing escalates while usage is below soft; in particular ``Terminate`` is only ever
  decided on a measurement above the soft limit.
* Every action is recorded as an ``EnforcementRecord`` in a bounded history.
* The degradation level is the usage/soft ratio mapped by 0.9/1.0/1.2/1.5, worst
  over the resources; it is advice to the agent, independent of enforcement.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from enum import Enum, IntEnum
from types import MappingProxyType

from .._errors import MabeamError

__all__ = [
    "MB",
    "GB",
    "QuotaError",
    "InvalidQuota",
    "UnknownTier",
    "InvalidMeasurement",
    "ClockWentBackwards",
    "AgentTerminated",
    "Stage",
    "Violation",
    "Degradation",
    "Resource",
    "ResourceLimit",
    "QuotaSpec",
    "TIERS",
    "tier",
    "EscalationPolicy",
    "degradation_level",
    "degradation_strategies",
    "throttle_factor",
    "Warn",
    "Throttle",
    "Suspend",
    "Resume",
    "Terminate",
    "Action",
    "EnforcementRecord",
    "Decision",
    "Escalator",
]

MB = 1_000_000  # the tiers are decimal: 50_000_000 bytes is "50 MB"
GB = 1_000_000_000


class QuotaError(MabeamError):
    """Base class of the quota errors."""


class InvalidQuota(QuotaError, ValueError):
    """Limits are not finite, not positive, or not ordered soft <= hard <= burst; or a policy is inconsistent."""


class UnknownTier(QuotaError, LookupError):
    """No preset tier has that name."""


class InvalidMeasurement(QuotaError, ValueError):
    """A measurement is negative or not finite."""


class ClockWentBackwards(QuotaError, ValueError):
    """``now`` is earlier than the previous measurement's: the escalation clock must not rewind."""


class AgentTerminated(QuotaError, RuntimeError):
    """The machine already decided ``Terminate``; measuring the agent further is a caller bug."""


class Stage(IntEnum):
    """How far enforcement has escalated for an agent, in order."""

    NORMAL = 0
    WARNED = 1
    THROTTLED = 2
    SUSPENDED = 3
    TERMINATED = 4


class Violation(IntEnum):
    """Which limit a usage is above (the zone), in order of severity."""

    NONE = 0
    SOFT = 1
    HARD = 2
    BURST = 3


class Degradation(IntEnum):
    """How much an agent is advised to degrade its work, in order."""

    NONE = 0
    MINIMAL = 1
    MODERATE = 2
    AGGRESSIVE = 3
    EMERGENCY = 4


class Resource(str, Enum):
    """A measured resource."""

    RSS = "rss"  # bytes
    CPU = "cpu"  # percent of one core, as psutil reports it (may exceed 100)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidQuota(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class ResourceLimit:
    """Soft, hard and burst limits of one resource, and the least stage enforced above hard."""

    soft: float
    hard: float
    burst: float
    hard_stage: Stage = Stage.THROTTLED

    def __post_init__(self) -> None:
        for name in ("soft", "hard", "burst"):
            _positive(name, getattr(self, name))
        if not self.soft <= self.hard <= self.burst:
            raise InvalidQuota(f"limits must satisfy soft <= hard <= burst, got {self.soft}, {self.hard}, {self.burst}")
        if self.hard_stage not in tuple(Stage)[1:]:
            raise InvalidQuota(f"hard_stage must be WARNED..TERMINATED, got {self.hard_stage!r}")
        object.__setattr__(self, "hard_stage", Stage(self.hard_stage))

    @classmethod
    def of(
        cls, soft: float, hard: float, *, burst_factor: float = 1.5, hard_stage: Stage = Stage.THROTTLED
    ) -> ResourceLimit:
        """Limits with ``burst = hard * burst_factor`` (1.5: the emergency degradation ratio)."""
        _positive("burst_factor", burst_factor)
        if burst_factor < 1:
            raise InvalidQuota(f"burst_factor must be >= 1, got {burst_factor}")
        return cls(soft, hard, hard * burst_factor, hard_stage)

    def violation(self, usage: float) -> Violation:
        if usage > self.burst:
            return Violation.BURST
        if usage > self.hard:
            return Violation.HARD
        return Violation.SOFT if usage > self.soft else Violation.NONE

    def limit_for(self, violation: Violation) -> float:
        """The limit a violation crossed (soft for NONE too: the line to stay under)."""
        return {Violation.HARD: self.hard, Violation.BURST: self.burst}.get(violation, self.soft)


@dataclass(frozen=True)
class QuotaSpec:
    """RSS and CPU limits of one agent; ``with_overrides`` gives the per-agent customisation."""

    name: str
    rss: ResourceLimit
    cpu: ResourceLimit

    def limit(self, resource: Resource) -> ResourceLimit:
        return self.rss if resource is Resource.RSS else self.cpu

    def with_overrides(
        self, *, rss: ResourceLimit | None = None, cpu: ResourceLimit | None = None, name: str | None = None
    ) -> QuotaSpec:
        return replace(self, name=name or self.name, rss=rss or self.rss, cpu=cpu or self.cpu)


# The preset tiers.  Asking an agent to shrink has no stage of its own on this ladder:
# it maps to THROTTLED, the nearest one.  Process-count limits are not measured here.
TIERS: MappingProxyType[str, QuotaSpec] = MappingProxyType(
    {
        "lightweight": QuotaSpec(
            "lightweight",
            ResourceLimit.of(50 * MB, 100 * MB, hard_stage=Stage.WARNED),
            ResourceLimit.of(5, 10, hard_stage=Stage.THROTTLED),
        ),
        "standard": QuotaSpec(
            "standard",
            ResourceLimit.of(200 * MB, 500 * MB, hard_stage=Stage.THROTTLED),
            ResourceLimit.of(15, 30, hard_stage=Stage.THROTTLED),
        ),
        "heavy": QuotaSpec(
            "heavy",
            ResourceLimit.of(1 * GB, 2 * GB, hard_stage=Stage.SUSPENDED),
            ResourceLimit.of(40, 80, hard_stage=Stage.THROTTLED),
        ),
    }
)


def tier(name: str) -> QuotaSpec:
    """The preset quota named ``name``; raises ``UnknownTier``."""
    try:
        return TIERS[name]
    except KeyError:
        raise UnknownTier(f"unknown quota tier {name!r}; known: {sorted(TIERS)}") from None


@dataclass(frozen=True)
class EscalationPolicy:
    """Timings in seconds from the episode start, and the degradation ratios."""

    throttle_after: float = 30.0
    suspend_after: float = 300.0
    terminate_after: float = 600.0
    calm_period: float = 60.0
    terminate_grace: float = 5.0
    degradation: tuple[float, float, float, float] = (0.9, 1.0, 1.2, 1.5)
    history_limit: int = 1_000

    def __post_init__(self) -> None:
        times = (self.throttle_after, self.suspend_after, self.terminate_after, self.calm_period, self.terminate_grace)
        if not all(isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 for t in times):
            raise InvalidQuota(f"policy times must be finite and >= 0: {times}")
        if not self.throttle_after <= self.suspend_after <= self.terminate_after:
            raise InvalidQuota("escalation delays must satisfy throttle_after <= suspend_after <= terminate_after")
        d = self.degradation
        if len(d) != 4 or not all(math.isfinite(x) and x > 0 for x in d) or list(d) != sorted(d):
            raise InvalidQuota(f"degradation ratios must be four increasing positive numbers, got {d}")
        if self.history_limit < 1:
            raise InvalidQuota(f"history_limit must be >= 1, got {self.history_limit}")

    def due(self, elapsed: float) -> Stage:
        """The stage an episode has earned after ``elapsed`` seconds above soft."""
        if elapsed >= self.terminate_after:
            return Stage.TERMINATED
        if elapsed >= self.suspend_after:
            return Stage.SUSPENDED
        return Stage.THROTTLED if elapsed >= self.throttle_after else Stage.WARNED


def degradation_level(
    ratio: float, thresholds: tuple[float, float, float, float] = (0.9, 1.0, 1.2, 1.5)
) -> Degradation:
    """The usage/limit ratio's level: > 1.5 emergency, > 1.2 aggressive, > 1.0 moderate, > 0.9 minimal, else none."""
    level = Degradation.NONE
    for i, threshold in enumerate(thresholds, start=1):
        if ratio > threshold:
            level = Degradation(i)
    return level


_STRATEGIES = {
    Resource.RSS: ("cache_aggressively", "batch_operations", "reduce_precision", "drop_non_essential"),
    Resource.CPU: ("batch_operations", "use_fallback_algorithm", "reduce_precision", "drop_non_essential"),
}


def degradation_strategies(resource: Resource, level: Degradation) -> tuple[str, ...]:
    """The strategies advised at ``level``: each level adds one strategy to the previous."""
    return _STRATEGIES[Resource(resource)][: int(level)]


def throttle_factor(usage: float, limit: float) -> float:
    """The share of speed to keep, by excess ratio ``(usage - limit) / limit``: more excess, slower."""
    excess = (usage - limit) / limit
    if excess > 1.0:
        return 0.5
    if excess > 0.5:
        return 0.7
    return 0.85 if excess > 0.2 else 0.9


@dataclass(frozen=True)
class Warn:
    resource: Resource
    usage: float
    limit: float


@dataclass(frozen=True)
class Throttle:
    resource: Resource
    factor: float


@dataclass(frozen=True)
class Suspend:
    resource: Resource


@dataclass(frozen=True)
class Resume:
    lifted: Stage  # the stage given up; WARNED means there was nothing to undo but the warning


@dataclass(frozen=True)
class Terminate:
    resource: Resource
    grace_period: float  # seconds to let the agent stop before killing it
    immediate: bool  # True: the burst rule, which skips the ladder


Action = Warn | Throttle | Suspend | Resume | Terminate


@dataclass(frozen=True)
class EnforcementRecord:
    """One escalation step decided.  Whether carrying it out succeeded is the executor's to log."""

    agent_id: Hashable
    at: float
    action: Action
    stage_before: Stage
    stage_after: Stage
    resource: Resource
    violation: Violation
    usage: float
    limit: float
    elapsed: float  # seconds since the episode started
    degradation: Degradation


@dataclass(frozen=True)
class Decision:
    """The outcome of one measurement: the actions to carry out, in order, and the new state."""

    at: float
    actions: tuple[Action, ...]
    stage: Stage
    violation: Violation
    resource: Resource  # the resource furthest over (or nearest to) its limit
    degradation: Degradation


class Escalator:
    """The escalation state machine of one agent (see the module doc for the rules)."""

    def __init__(self, agent_id: Hashable, spec: QuotaSpec, policy: EscalationPolicy = EscalationPolicy()) -> None:
        self.agent_id = agent_id
        self.spec = spec
        self.policy = policy
        self.stage = Stage.NORMAL
        self.episode_started: float | None = None
        self.calm_since: float | None = None
        self.last_at: float | None = None
        self.records_dropped = 0
        self._history: deque[EnforcementRecord] = deque(maxlen=policy.history_limit)

    @property
    def history(self) -> tuple[EnforcementRecord, ...]:
        """The most recent records, oldest first; ``records_dropped`` counts the evicted ones."""
        return tuple(self._history)

    def observe(self, now: float, rss: float, cpu_percent: float) -> Decision:
        if self.stage is Stage.TERMINATED:
            raise AgentTerminated(f"agent {self.agent_id!r} was already terminated")
        try:
            now, rss, cpu_percent = float(now), float(rss), float(cpu_percent)
        except (TypeError, ValueError):
            raise InvalidMeasurement(f"measurements must be numbers, got {(now, rss, cpu_percent)!r}") from None
        if not all(math.isfinite(x) for x in (now, rss, cpu_percent)) or rss < 0 or cpu_percent < 0:
            raise InvalidMeasurement(f"need finite now and finite rss, cpu_percent >= 0; got {(now, rss, cpu_percent)}")
        if self.last_at is not None and now < self.last_at:
            raise ClockWentBackwards(f"measurement at {now} after one at {self.last_at}")
        self.last_at = now

        usage = {Resource.RSS: rss, Resource.CPU: cpu_percent}
        zones = {r: self.spec.limit(r).violation(u) for r, u in usage.items()}
        ratios = {r: u / self.spec.limit(r).soft for r, u in usage.items()}
        resource = max(usage, key=lambda r: (zones[r], ratios[r]))
        zone = zones[resource]
        degradation = max(degradation_level(x, self.policy.degradation) for x in ratios.values())
        actions: list[Action] = []

        def emit(action: Action, stage: Stage) -> None:
            started = self.episode_started
            record = EnforcementRecord(
                self.agent_id,
                now,
                action,
                self.stage,
                stage,
                resource,
                zone,
                usage[resource],
                self.spec.limit(resource).limit_for(zone),
                0.0 if started is None else now - started,
                degradation,
            )
            if len(self._history) == self._history.maxlen:
                self.records_dropped += 1
            self._history.append(record)
            actions.append(action)
            self.stage = stage

        if zone is Violation.BURST:
            if self.episode_started is None:
                self.episode_started = now
            emit(Terminate(resource, 0.0, True), Stage.TERMINATED)
        elif zone is Violation.NONE:
            if self.stage is not Stage.NORMAL:
                if self.calm_since is None:
                    self.calm_since = now
                if now - self.calm_since >= self.policy.calm_period:
                    emit(Resume(self.stage), Stage.NORMAL)
                    self.episode_started = self.calm_since = None
        else:
            self.calm_since = None
            if self.episode_started is None:
                self.episode_started = now
            target = self.policy.due(now - self.episode_started)
            if zone is Violation.HARD:
                floors = [self.spec.limit(r).hard_stage for r in usage if zones[r] >= Violation.HARD]
                target = max(target, *floors)
            while self.stage < target:
                self._step(emit, resource, usage[resource], zone)
        return Decision(now, tuple(actions), self.stage, zone, resource, degradation)

    def _step(self, emit: Callable[[Action, Stage], None], resource: Resource, usage: float, zone: Violation) -> None:
        """Climb exactly one stage; the only place (besides the burst rule) that escalates."""
        limit = self.spec.limit(resource).limit_for(zone)
        nxt = Stage(self.stage + 1)
        if nxt is Stage.WARNED:
            emit(Warn(resource, usage, limit), nxt)
        elif nxt is Stage.THROTTLED:
            emit(Throttle(resource, throttle_factor(usage, limit)), nxt)
        elif nxt is Stage.SUSPENDED:
            emit(Suspend(resource), nxt)
        else:
            emit(Terminate(resource, self.policy.terminate_grace, False), nxt)
