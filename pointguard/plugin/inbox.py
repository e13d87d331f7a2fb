"""The inbox: every verified webhook, recorded once per (merchant, webhook id) and committed
before the sender hears 202. A replay of the same id changes nothing and is told how the
first one stands."""

from __future__ import annotations

from dataclasses import dataclass

from pointguard.db import PgConnection

RECORD = """
INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, status)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (merchant_id, webhook_id) DO NOTHING
RETURNING status
"""

EXISTING = "SELECT status FROM inbox WHERE merchant_id = $1 AND webhook_id = $2"


@dataclass(frozen=True)
class Recorded:
    webhook_id: str
    status: str  # pending, applied, ignored or dead
    replayed: bool


async def record_webhook(
    pg: PgConnection,
    merchant_id: str,
    webhook_id: str,
    event_type: str,
    payload: str,
    *,
    ignored: bool,
) -> Recorded:
    """Store a verified webhook (one statement: committed when it returns, outside a
    transaction), or report the first delivery of this id."""
    status = await pg.fetchval(
        RECORD, merchant_id, webhook_id, event_type, payload, "ignored" if ignored else "pending"
    )
    if status is not None:
        return Recorded(webhook_id, status, replayed=False)
    first = await pg.fetchval(EXISTING, merchant_id, webhook_id)
    return Recorded(webhook_id, str(first), replayed=True)
