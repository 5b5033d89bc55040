"""What a simulation runs: a policy, Users with demand curves and clients, and incidents.

Everything is a frozen dataclass that checks itself when built (a
:class:`~srtm.sim.ScenarioError` names the field); the policy is the core's
:class:`~srtm.TrafficPolicy`, checked by the core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from srtm.identity import valid_user_id
from srtm.policy import TrafficPolicy, parse_duis_version
from srtm.sim._classes import Priority
from srtm.sim._curves import DAY, Curve
from srtm.sim._errors import ScenarioError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CapacityChange",
    "Client",
    "OpenLoop",
    "Scenario",
    "Stream",
    "User",
    "outage",
    "streams",
]


@dataclass(frozen=True, slots=True)
class Stream:
    """SRs of one priority class arriving at a User's back end at ``rate`` (a Curve)."""

    rate: Curve
    priority: int = Priority.ROUTINE

    def __post_init__(self) -> None:
        if not isinstance(self.rate, Curve):
            raise ScenarioError("Stream.rate", f"must be a Curve, got {self.rate!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ScenarioError("Stream.priority", f"must be an int class, got {self.priority!r}")


def streams(curve: Curve, mix: Mapping[int, float]) -> tuple[Stream, ...]:
    """Split ``curve`` over priority classes: ``mix`` maps class -> share (shares add to 1)."""
    total = math.fsum(mix.values())
    if not mix or abs(total - 1) > 1e-6 or any(v < 0 for v in mix.values()):
        raise ScenarioError("mix", f"shares must be >= 0 and add up to 1, got {dict(mix)!r}")
    return tuple(Stream(curve * share, cls) for cls, share in mix.items() if share > 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A User's back end sending through srtm.client: queued, prioritised, obedient.

    The client holds every SR the User's back end submits in one queue per priority
    class (FIFO within a class) and sends the most urgent first, at most ``max_rate``
    SR/s (its line). A refused SR goes back to the queue; after a 429/503 the whole
    User pauses until ``Retry-After`` plus a random extra of up to
    ``max(jitter, jitter_ratio * Retry-After)`` (rounded down to the simulator's slice),
    or, when there is none (the baseline's overloaded back end gives none), for an
    exponential backoff with full jitter from ``backoff_initial`` doubling to
    ``backoff_max`` seconds, as :class:`srtm.client.RetryPolicy` does by default.
    ``aging``: seconds of waiting worth one class, as in
    :class:`srtm.client.PriorityPolicy`; None (the default here) is strict priority.
    ``priorities=False`` sends in arrival order.

    One simulated User stands for all of a Supplier's client instances: the second of
    jitter each instance adds to a short ``Retry-After`` spreads their returns over the
    next second rather than delaying the User as a whole, hence ``jitter=0`` here
    (srtm.client: 1 s); ``jitter_ratio`` is srtm.client's, so Users told to wait a
    minute do not all come back in the same second. Not modelled: pacing from the
    RateLimit fields, the bulk lane, retry budgets and deadlines (a client that paces
    itself is refused less often than this one).
    """

    max_rate: float = 5_000.0
    priorities: bool = True
    aging: float | None = None
    jitter: float = 0.0
    jitter_ratio: float = 0.1
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_rate) and self.max_rate > 0):
            raise ScenarioError("Client.max_rate", f"must be > 0 SR/s, got {self.max_rate!r}")
        if self.aging is not None and not (math.isfinite(self.aging) and self.aging > 0):
            raise ScenarioError("Client.aging", f"must be > 0 s or None, got {self.aging!r}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ScenarioError("Client.jitter", f"must be >= 0 s, got {self.jitter!r}")
        if not (math.isfinite(self.jitter_ratio) and self.jitter_ratio >= 0):
            raise ScenarioError("Client.jitter_ratio", f"must be >= 0, got {self.jitter_ratio!r}")
        if not (0 < self.backoff_initial <= self.backoff_max < math.inf):
            raise ScenarioError(
                "Client.backoff_initial",
                f"need 0 < backoff_initial <= backoff_max, got {self.backoff_initial!r}, "
                f"{self.backoff_max!r}",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLoop:
    """A sender that ignores refusals: it offers its demand as it comes, refused SRs are lost.

    A denial-of-service, or a back end in a loop that bypasses its client library.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A Service User: its identity, what its back end submits, and how it sends.

    ``id`` is the identity the gateway counts against (an EUI-64 in DCC practice);
    ``name`` labels it in plots and tables. Its allocation lives in the scenario's policy.
    """

    id: str
    demand: Sequence[Stream]
    name: str | None = None
    client: Client | OpenLoop = field(default_factory=Client)
    duis_version: str = "4.1"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not valid_user_id(self.id):
            raise ScenarioError("User.id", f"must be a User ID token (no spaces), got {self.id!r}")
        demand = tuple(self.demand)
        if not all(isinstance(s, Stream) for s in demand):
            raise ScenarioError(f"User[{self.id!r}].demand", "must be a sequence of Streams")
        object.__setattr__(self, "demand", demand)
        if not isinstance(self.client, Client | OpenLoop):
            raise ScenarioError(
                f"User[{self.id!r}].client", f"must be Client() or OpenLoop(), got {self.client!r}"
            )
        if parse_duis_version(self.duis_version) is None:
            raise ScenarioError(
                f"User[{self.id!r}].duis_version", f"must be like '4.1', got {self.duis_version!r}"
            )

    @property
    def label(self) -> str:
        """The name if given, else the ID."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class CapacityChange:
    """At ``at`` seconds the capacity becomes ``capacity`` SR/s (None: the policy's again).

    The simulator applies it with ``Gate.set_capacity``, as an operator would.
    """

    at: float
    capacity: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at) and self.at >= 0):
            raise ScenarioError("CapacityChange.at", f"must be a time >= 0 s, got {self.at!r}")
        if self.capacity is not None and not (math.isfinite(self.capacity) and self.capacity >= 0):
            raise ScenarioError(
                "CapacityChange.capacity", f"must be >= 0 SR/s or None, got {self.capacity!r}"
            )


def outage(*, start: float, duration: float, capacity: float = 0.0) -> tuple[CapacityChange, ...]:
    """Capacity falls to ``capacity`` (0: nothing is processed) for ``duration`` seconds."""
    if not (math.isfinite(duration) and duration > 0):
        raise ScenarioError("outage.duration", f"must be > 0 s, got {duration!r}")
    return (CapacityChange(start, capacity), CapacityChange(start + duration, None))


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A day (or any span) of traffic against one pool: what ``srtm simulate`` runs.

    ``policy``: the pool's :class:`~srtm.TrafficPolicy` (its storage is ignored: the
    simulator keeps the counters itself). ``users``: who sends what. ``incidents``:
    capacity changes (see :func:`outage`). ``duration``: seconds simulated, from
    00:00. ``culprits``: IDs of the Users that cause the incident, left out of the
    "well-behaved" figures. ``focus``: the (start, end) span the zoomed plots and the
    incident figures cover; None picks it from the run (where the offered load reached
    the threshold, or capacity was reduced). ``seed`` makes the random arrivals
    (Poisson around each curve) and tie-breaks repeatable.
    """

    name: str
    policy: TrafficPolicy
    users: Sequence[User]
    incidents: Sequence[CapacityChange] = ()
    duration: float = DAY
    description: str = ""
    culprits: frozenset[str] = frozenset()
    focus: tuple[float, float] | None = None
    priority_class: int = Priority.PREPAYMENT
    seed: int = 2020

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or " " in self.name:
            raise ScenarioError("name", f"must be a short name without spaces, got {self.name!r}")
        if not isinstance(self.policy, TrafficPolicy):
            raise ScenarioError("policy", f"must be a TrafficPolicy, got {self.policy!r}")
        users = tuple(self.users)
        if not users:
            raise ScenarioError("users", "at least one User is needed")
        if not all(isinstance(u, User) for u in users):
            raise ScenarioError("users", "must be a sequence of User")
        ids = [u.id for u in users]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ScenarioError("users", f"User IDs must be unique; repeated: {dupes}")
        object.__setattr__(self, "users", users)
        if not (math.isfinite(self.duration) and self.duration >= self.policy.window):
            raise ScenarioError(
                "duration",
                f"must be at least one window ({self.policy.window} s), got {self.duration!r}",
            )
        incidents = tuple(self.incidents)
        for item in incidents:
            if not isinstance(item, CapacityChange):
                raise ScenarioError("incidents", f"must be CapacityChange items, got {item!r}")
            if item.at >= self.duration:
                raise ScenarioError("incidents", f"{item!r} comes after the end of the run")
        object.__setattr__(self, "incidents", tuple(sorted(incidents, key=lambda c: c.at)))
        unknown = sorted(set(self.culprits) - set(ids))
        if unknown:
            raise ScenarioError("culprits", f"not Users of this scenario: {unknown}")
        object.__setattr__(self, "culprits", frozenset(self.culprits))
        if self.focus is not None:
            lo, hi = self.focus
            if not (0 <= lo < hi <= self.duration):
                raise ScenarioError(
                    "focus", f"must be (start, end) within the run, got {self.focus!r}"
                )

    def user(self, user_id: str) -> User:
        """The User with that ID (KeyError if none)."""
        for u in self.users:
            if u.id == user_id:
                return u
        raise KeyError(user_id)

    @property
    def well_behaved(self) -> tuple[User, ...]:
        """The Users that are not culprits."""
        return tuple(u for u in self.users if u.id not in self.culprits)
