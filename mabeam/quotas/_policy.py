"""Resource quotas and the per-agent escalation state machine.

This module is the decision logic the quota manager calls once per measurement:

    escalator = Escalator("agent-7", tier("standard"))
    decision = escalator.observe(now, rss_bytes, cpu_percent)   # -> actions to carry out

It reads no clock and touches no process, so every rule below is tested by replaying
timestamps.  Rules (all numbers are ``EscalationPolicy``/``ResourceLimit`` parameters,
defaults in parentheses):

* What is judged.  RSS as measured.  CPU as its mean over the last ``cpu_window`` (30 s):
  each measurement's percent covers the time since the previous one, and time not
  observed yet counts as idle.  CPU is a rate, and one second of a request computing is
  100% of a core: judged sample by sample, every computation longer than a measurement
  period would look like a hog.  ``cpu_window=0`` judges each sample as it is.  While
  the agent is suspended its CPU is judged at the mean it had when suspended: a stopped
  process uses no CPU, and its own suspension must not pass for calm.
* Zones: ``NONE`` (usage <= soft), ``SOFT`` (soft < usage <= hard), ``HARD`` (hard <
  usage <= burst) and ``BURST`` (usage > burst).  The agent's zone is the worst over RSS
  and CPU.
* An *episode* starts with the first measurement above soft.  Stages are reached in order,
  counted from the episode start: ``Warn`` at once, ``Throttle`` after ``throttle_after``
  (30 s), ``Suspend`` after ``suspend_after`` (5 min), ``Terminate`` after
  ``terminate_after`` (10 min).  When measurements are sparse, one observation emits
  every stage it passes, in order.
* Above hard the stage is at least the limit's ``hard_stage`` (``WARNED`` to
  ``SUSPENDED``: a limit cannot ask for termination at once), reached through the
  intermediate stages in the same step.
* Above burst the stage is at least ``THROTTLED`` at once; an agent that stays above burst
  (every measurement) for ``burst_after`` (60 s) is terminated, skipping the suspension if
  it was not suspended yet: the one documented skip.  A measurement at or below burst
  restarts that clock.
* De-escalation: once usage is back at or below soft for ``calm_period`` (60 s), ``Resume``
  is emitted and the stage returns to ``NORMAL``.  A dip shorter than that does not reset
  the episode clock, so an agent hovering at its soft limit cannot dodge escalation.
* Nothing escalates while the judged usage is at or below soft; in particular
  ``Terminate`` is only ever decided on a judged usage above the soft limit, and only
  after ``Warn`` and ``Throttle`` were decided.
* Every action is recorded as an ``EnforcementRecord`` in a bounded history.
* The degradation level is the usage/soft ratio mapped by 0.9/1.0/1.2/1.5, worst
  over the resources; it is advice to the agent, independent of enforcement.

The bounds these rules give (with the defaults):

* Work is not terminated for being work.  A computation of ``L`` seconds on ``c`` cores
  raises the CPU mean by at most ``100 * c * L / cpu_window`` percent (one core for 2 s:
  6.7%, under every preset's hard limit) and leaves the window ``cpu_window + L`` seconds
  after it started, so on an otherwise idle agent one shorter than ``burst_after -
  cpu_window`` (30 s) is never terminated by the burst rule, and the ladder terminates only after ``terminate_after``
  of usage above soft with no calm period in between.
* A CPU hog is terminated.  A process that keeps wanting more than twice its CPU soft
  limit stays above it when throttled (the duty cycle keeps at least half its speed) and
  is judged at that level while suspended, so it is warned within ``cpu_window / 2`` of
  starting (plus a measurement period), throttled ``throttle_after`` later (at once above
  hard), suspended at ``suspend_after`` and terminated at ``terminate_after``: within
  ``cpu_window / 2 + terminate_after`` (615 s) plus two measurement periods, sooner if it
  stays above burst for ``burst_after``.  (Throttling may pull the mean back under soft
  for less than ``cpu_window / 2``; a ``calm_period`` at least that long keeps the
  episode, as the default does.)
* Memory: a suspended process cannot free memory, so a suspension (or a ``hard_stage`` of
  ``SUSPENDED``) ends in termination at ``terminate_after`` unless the quota is changed.
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
    hard_stage: Stage = Stage.THROTTLED  # WARNED..SUSPENDED: termination needs a sustained violation

    def __post_init__(self) -> None:
        for name in ("soft", "hard", "burst"):
            _positive(name, getattr(self, name))
        if not self.soft <= self.hard <= self.burst:
            raise InvalidQuota(f"limits must satisfy soft <= hard <= burst, got {self.soft}, {self.hard}, {self.burst}")
        if self.hard_stage not in (Stage.WARNED, Stage.THROTTLED, Stage.SUSPENDED):
            raise InvalidQuota(f"hard_stage must be WARNED..SUSPENDED, got {self.hard_stage!r}")
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
# Burst is twice hard: a Python process with numpy and scikit-learn loaded is about
# 140 MB resident, and 1.5 x the lightweight hard limit (150 MB) is where its training
# peaks; above burst the agent is terminated after ``burst_after``, not warned.
TIERS: MappingProxyType[str, QuotaSpec] = MappingProxyType(
    {
        "lightweight": QuotaSpec(
            "lightweight",
            ResourceLimit.of(50 * MB, 100 * MB, burst_factor=2, hard_stage=Stage.WARNED),
            ResourceLimit.of(5, 10, burst_factor=2, hard_stage=Stage.THROTTLED),
        ),
        "standard": QuotaSpec(
            "standard",
            ResourceLimit.of(200 * MB, 500 * MB, burst_factor=2, hard_stage=Stage.THROTTLED),
            ResourceLimit.of(15, 30, burst_factor=2, hard_stage=Stage.THROTTLED),
        ),
        "heavy": QuotaSpec(
            "heavy",
            ResourceLimit.of(1 * GB, 2 * GB, burst_factor=2, hard_stage=Stage.SUSPENDED),
            ResourceLimit.of(40, 80, burst_factor=2, hard_stage=Stage.THROTTLED),
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
    """Timings in seconds (the stages' from the episode start), and the degradation ratios."""

    throttle_after: float = 30.0
    suspend_after: float = 300.0
    terminate_after: float = 600.0
    calm_period: float = 60.0
    terminate_grace: float = 5.0
    degradation: tuple[float, float, float, float] = (0.9, 1.0, 1.2, 1.5)
    history_limit: int = 1_000
    cpu_window: float = 30.0  # CPU is judged on its mean over this window (0: each sample)
    burst_after: float = 60.0  # continuously above burst this long: terminated

    def __post_init__(self) -> None:
        times = (
            self.throttle_after,
            self.suspend_after,
            self.terminate_after,
            self.calm_period,
            self.terminate_grace,
            self.cpu_window,
            self.burst_after,
        )
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
    burst: bool  # True: the burst rule (above burst for burst_after), which may skip the suspension


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
    cpu_percent: float  # the CPU judged: the window's mean, or the mean at suspension while suspended


class Escalator:
    """The escalation state machine of one agent (see the module doc for the rules)."""

    def __init__(self, agent_id: Hashable, spec: QuotaSpec, policy: EscalationPolicy = EscalationPolicy()) -> None:
        self.agent_id = agent_id
        self.spec = spec
        self.policy = policy
        self.stage = Stage.NORMAL
        self.episode_started: float | None = None
        self.calm_since: float | None = None
        self.burst_since: float | None = None
        self.last_at: float | None = None
        self.records_dropped = 0
        self._history: deque[EnforcementRecord] = deque(maxlen=policy.history_limit)
        self._cpu_samples: deque[tuple[float, float, float]] = deque()  # (from, to, percent) in the window
        self._cpu_area = 0.0  # sum of percent x duration over _cpu_samples
        self._cpu_at_suspension: float | None = None

    @property
    def history(self) -> tuple[EnforcementRecord, ...]:
        """The most recent records, oldest first; ``records_dropped`` counts the evicted ones."""
        return tuple(self._history)

    def observe(self, now: float, rss: float, cpu_percent: float) -> Decision:
        """One measurement: ``rss`` in bytes and ``cpu_percent``, the mean since the
        previous measurement (ignored on the first one unless ``cpu_window`` is 0)."""
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
        previous, self.last_at = self.last_at, now

        cpu = self._judge_cpu(previous, now, cpu_percent)
        usage = {Resource.RSS: rss, Resource.CPU: cpu}
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

        if zone is Violation.NONE:
            self.burst_since = None
            if self.stage is not Stage.NORMAL:
                if self.calm_since is None:
                    self.calm_since = now
                if now - self.calm_since >= self.policy.calm_period:
                    emit(Resume(self.stage), Stage.NORMAL)
                    self.episode_started = self.calm_since = self._cpu_at_suspension = None
        else:
            self.calm_since = None
            if self.episode_started is None:
                self.episode_started = now
            target = self.policy.due(now - self.episode_started)
            if zone >= Violation.HARD:
                floors = [self.spec.limit(r).hard_stage for r in usage if zones[r] >= Violation.HARD]
                target = max(target, *floors)
            burst_due = False
            if zone is Violation.BURST:
                if self.burst_since is None:
                    self.burst_since = now
                target = max(target, Stage.THROTTLED)
                burst_due = now - self.burst_since >= self.policy.burst_after
            else:
                self.burst_since = None
            while self.stage < target:
                self._step(emit, resource, usage[resource], zone)
            if burst_due and self.stage is not Stage.TERMINATED:
                emit(Terminate(resource, self.policy.terminate_grace, True), Stage.TERMINATED)
            if self.stage is Stage.SUSPENDED and self._cpu_at_suspension is None:
                self._cpu_at_suspension = cpu
        return Decision(now, tuple(actions), self.stage, zone, resource, degradation, cpu)

    def _judge_cpu(self, previous: float | None, now: float, cpu_percent: float) -> float:
        """The CPU percent the rules judge: the window's mean (see the module doc)."""
        if self._cpu_at_suspension is not None:
            return self._cpu_at_suspension  # its samples are of our SIGSTOP, not of its demand
        window = self.policy.cpu_window
        if window == 0:
            return cpu_percent
        samples = self._cpu_samples
        if previous is not None and now > previous:
            samples.append((previous, now, cpu_percent))
            self._cpu_area += cpu_percent * (now - previous)
        horizon = now - window
        while samples and samples[0][1] <= horizon:
            start, end, percent = samples.popleft()
            self._cpu_area -= percent * (end - start)
        if not samples:
            self._cpu_area = 0.0  # no rounding residue carried into the next episode
            return 0.0
        area = self._cpu_area
        start, _, percent = samples[0]
        if start < horizon:
            area -= percent * (horizon - start)
        return max(0.0, area / window)

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
