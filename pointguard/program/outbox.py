"""Events for the storefront, written to the `outbox` table in the caller's transaction, so an
event exists exactly when the change it reports was committed. The webhook plugin's dispatcher
delivers them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from pointguard.db import PgConnection
from pointguard.ledger import AccountKind, EntryKind, PostedEntry
from pointguard.program.intents import OutboxEvent

INSERT_OUTBOX_EVENTS = """
INSERT INTO outbox (merchant_id, event_type, payload)
SELECT $1, * FROM unnest($2::text[], $3::jsonb[])
"""


async def write_events(
    pg: PgConnection, merchant_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """Queue `(event type, payload)` pairs (`OutboxEvent`s) for the merchant's storefront."""
    if events:
        await pg.execute(
            INSERT_OUTBOX_EVENTS,
            merchant_id,
            [kind for kind, _ in events],
            [msgspec.json.encode(payload).decode() for _, payload in events],
        )


async def write_entry_events(
    pg: PgConnection, merchant_id: str, entries: Sequence[PostedEntry]
) -> None:
    """The `entry_events` of entries posted just now."""
    await write_events(pg, merchant_id, entry_events(entries))


def entry_events(entries: Sequence[PostedEntry]) -> list[OutboxEvent]:
    """`points.pending`, `points.earned`, `points.released` or `points.reversed` for each entry
    posted just now (an entry replayed under its idempotency key was announced before)."""
    return [
        OutboxEvent(
            _entry_event_type(e),
            {
                "member_id": next(p.account.member_id for p in e.postings if p.account.is_member),
                "entry_id": e.entry_id,
                "kind": e.kind.value,
                "points": sum(p.amount_points for p in e.postings if p.amount_points > 0),
                "description": e.description,
                "at": e.created_at,
            },
        )
        for e in entries
        if not e.replayed
    ]


def _entry_event_type(entry: PostedEntry) -> str:
    if entry.kind == EntryKind.RELEASE:
        return "points.released"
    if entry.kind != EntryKind.EARN:
        return "points.reversed"
    pending = any(p.account.kind == AccountKind.PENDING for p in entry.postings)
    return "points.pending" if pending else "points.earned"
