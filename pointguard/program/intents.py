"""What the program's decisions ask for: earns and take-backs for the ledger, and events for the
storefront. The pure rules return these; `apply.py` posts the intents and writes the events,
once per batch, so no decision touches the database.

Every intent carries an idempotency key derived from the event or the order, so an event applied
twice posts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from msgspec import Struct


class EarnIntent(Struct, frozen=True):
    """An earn for the ledger. A Struct rather than a dataclass: several are built per order,
    and a frozen dataclass costs twice as much to build."""

    key: str
    points: int
    description: str
    source: str
    release_at: datetime | None  # pending until then; None: available at once
    expires_at: datetime | None
    member_id: str | None = None  # who earns, if not the event's member (a referrer)


class TakeBackIntent(Struct, frozen=True):
    earn_key: str  # the earn to take from
    key: str
    points: int
    description: str
    source: str


Intent = EarnIntent | TakeBackIntent


class OutboxEvent(NamedTuple):
    """An event for the merchant's storefront: `challenge.completed`, `tier.changed`, ..."""

    event_type: str
    payload: Mapping[str, Any]
