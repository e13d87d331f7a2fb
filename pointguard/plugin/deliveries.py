"""Dead outbound deliveries: list them, and queue them again once the endpoint is fixed.

Rules this module enforces:
- A delivery is named by its webhook id (`{merchant}:{outbox_id}`, what the merchant's
  endpoint saw) or by its bare outbox id, always together with its merchant: a webhook id of
  another merchant names nothing.
- A replay touches only dead deliveries. It makes them pending and due at once, with their
  attempts back at 0 (a full retry schedule) and their last error cleared; the dispatcher then
  sends them as it sends any pending delivery, under the endpoint's circuit breaker. The body
  and the webhook id are the outbox row's, unchanged, so a receiver that already processed an
  event before answering with an error dedupes the replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pointguard.clock import wall_clock
from pointguard.db import PgConnection
from pointguard.plugin.dispatcher import webhook_id

MAX_LISTED = 1000
MAX_OUTBOX_ID = 2**63 - 1  # bigint

SELECT_DEAD_DELIVERIES = """
SELECT d.merchant_id, d.outbox_id, o.event_type, d.attempts, d.last_status, d.last_error,
       o.created_at
FROM outbox_deliveries d
JOIN outbox o ON o.merchant_id = d.merchant_id AND o.outbox_id = d.outbox_id
WHERE d.status = 'dead' AND ($1::text IS NULL OR d.merchant_id = $1)
ORDER BY o.created_at, d.merchant_id, d.outbox_id
LIMIT $2
"""

# $2 NULL: every dead delivery of the merchant.
REPLAY_DEAD_DELIVERIES = """
WITH replayed AS (
    UPDATE outbox_deliveries
    SET status = 'pending', attempts = 0, last_error = NULL, last_status = NULL,
        next_attempt_at = $3
    WHERE merchant_id = $1 AND status = 'dead' AND ($2::bigint IS NULL OR outbox_id = $2)
    RETURNING 1)
SELECT count(*) FROM replayed
"""


@dataclass(frozen=True)
class DeadDelivery:
    """An outbox event whose every attempt failed: `last_status` is the endpoint's last HTTP
    answer (None when none came), `last_error` what went wrong, `created_at` when the event
    was written to the outbox."""

    merchant_id: str
    outbox_id: int
    webhook_id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime


def outbox_id_of(merchant_id: str, webhook_or_outbox_id: str) -> int | None:
    """The outbox id named by `{merchant}:{outbox_id}` or a bare outbox id; None when the text
    names no delivery of this merchant."""
    owner, _, number = webhook_or_outbox_id.rpartition(":")
    if owner and owner != merchant_id:
        return None
    if not number.isascii() or not number.isdigit() or int(number) > MAX_OUTBOX_ID:
        return None
    return int(number)


async def dead_deliveries(
    pg: PgConnection, merchant_id: str | None = None, *, limit: int = 100
) -> list[DeadDelivery]:
    """Dead deliveries, oldest event first; every merchant's when `merchant_id` is None."""
    if not 0 < limit <= MAX_LISTED:
        raise ValueError(f"limit must be 1..{MAX_LISTED}, got {limit}")
    return [
        DeadDelivery(
            merchant_id=r["merchant_id"],
            outbox_id=r["outbox_id"],
            webhook_id=webhook_id(r["merchant_id"], r["outbox_id"]),
            event_type=r["event_type"],
            attempts=r["attempts"],
            last_status=r["last_status"],
            last_error=r["last_error"],
            created_at=r["created_at"],
        )
        for r in await pg.fetch(SELECT_DEAD_DELIVERIES, merchant_id, limit)
    ]


async def replay_dead_delivery(
    pg: PgConnection,
    merchant_id: str,
    webhook_or_outbox_id: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Queue one dead delivery again, due at `now`; False if it names no dead delivery."""
    outbox_id = outbox_id_of(merchant_id, webhook_or_outbox_id)
    if outbox_id is None:
        return False
    return await _replay(pg, merchant_id, outbox_id, now) == 1


async def replay_dead_deliveries(
    pg: PgConnection, merchant_id: str, *, now: datetime | None = None
) -> int:
    """Queue every dead delivery of the merchant again, due at `now`; how many there were."""
    return await _replay(pg, merchant_id, None, now)


async def _replay(
    pg: PgConnection, merchant_id: str, outbox_id: int | None, now: datetime | None
) -> int:
    return int(
        await pg.fetchval(REPLAY_DEAD_DELIVERIES, merchant_id, outbox_id, now or wall_clock())
    )
