"""A whole simulated stream: honest customers and the attacks, merged in time order, each
event given its `webhook_id` and `label`, written one JSON object per line.

A line is the webhook body (`type`, `timestamp`, `data`) plus `webhook_id` and `label`
(`{"abusive": bool, "kind": str}`); `checkout.redeemed` lines stand for a checkout spending
points (`data: {customer_id, points}`), which goes through the GraphQL API, not a webhook.
The same `StreamSettings` give the same lines, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pointguard.fraud.simulation.attacks import ATTACKS
from pointguard.fraud.simulation.customers import honest_stream
from pointguard.fraud.simulation.events import HONEST, SimEvent
from pointguard.fraud.simulation.identities import Identities
from pointguard.fraud.simulation.period import DEFAULT_START, Period

# Campaigns of each attack kind per honest customer: with a campaign's 5 to 30 events against
# an honest customer's 4 or so, attacks make a few percent of the events.
CAMPAIGNS_PER_CUSTOMER = 1 / 600
MAX_CUSTOMERS = 1_000_000
MAX_DAYS = 3660


@dataclass(frozen=True)
class StreamSettings:
    customers: int
    days: int
    seed: int
    start: datetime = DEFAULT_START

    def __post_init__(self) -> None:
        if not 1 <= self.customers <= MAX_CUSTOMERS:
            raise ValueError(f"customers must be 1 to {MAX_CUSTOMERS:,}, got {self.customers}")
        if not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"days must be 1 to {MAX_DAYS}, got {self.days}")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")

    def run_tag(self) -> str:
        """A short digest of the settings: it prefixes the stream's webhook ids, so that two
        different streams sent to one merchant are never taken for replays of each other."""
        said = f"{self.customers}:{self.days}:{self.seed}:{self.start.isoformat()}"
        return hashlib.sha256(said.encode()).hexdigest()[:8]


def campaigns_per_kind(customers: int) -> int:
    """How many campaigns of each attack kind: at least one, so every kind is in every stream."""
    return max(1, round(customers * CAMPAIGNS_PER_CUSTOMER))


def simulate(settings: StreamSettings) -> list[SimEvent]:
    """Every event of the stream, in time order (ties in the order they were made, which keeps
    each customer's events in the order they happened)."""
    rng = random.Random(settings.seed)
    ids = Identities(rng)
    period = Period(settings.start.astimezone(UTC), settings.days)
    stream = honest_stream(rng, ids, period, settings.customers)
    for attack in ATTACKS.values():
        for _ in range(campaigns_per_kind(settings.customers)):
            stream += attack(rng, ids, period)
    stream.sort(key=lambda event: event.at)
    return stream


class StreamLine(NamedTuple):
    kind: str  # the label's kind: "honest" or the attack's
    text: str  # the JSON object, without a newline


def stream_lines(settings: StreamSettings) -> Iterator[StreamLine]:
    """The stream as JSON lines, in time order."""
    tag = settings.run_tag()
    for n, event in enumerate(simulate(settings)):
        line = line_of(event, f"sim-{tag}-{n:07d}")
        yield StreamLine(event.kind, json.dumps(line, separators=(",", ":")))


def line_of(event: SimEvent, webhook_id: str) -> dict[str, Any]:
    return {
        "type": event.type,
        "timestamp": event.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": event.data,
        "webhook_id": webhook_id,
        "label": {"abusive": event.kind != HONEST, "kind": event.kind},
    }
