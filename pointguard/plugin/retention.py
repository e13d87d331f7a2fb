"""Retention: the inbox and the outbox delete what nobody needs any more, one merchant at a
time, in bounded batches. The upkeep (`pointguard/upkeep.py`) runs both purges for each merchant
that has something old enough to delete (`HAS_OLD_INBOX_ROWS`, `HAS_OLD_OUTBOX_EVENTS`).

Rules this module enforces:
- An inbox row is deleted only in a final state, `applied` or `ignored`, and only once it was
  received more than `POINTGUARD_INBOX_RETENTION_DAYS` ago. A `pending` row waits for a worker
  and a `dead` one for an operator (`pointguard inbox replay`): neither is ever deleted.
- An outbox event is deleted only once it was created more than
  `POINTGUARD_OUTBOX_RETENTION_DAYS` ago, and only when the dispatcher is done with it: its
  delivery is `delivered`, or it has no delivery and the merchant has no endpoint, so nothing
  will ever send it (the merchant's row is locked meanwhile, so an endpoint cannot be set
  halfway; one set later gets the events of the retention period, not the older ones). An
  event whose delivery is `pending` (on its way, or retrying) or `dead` (waiting for
  `pointguard outbox replay`), and one the dispatcher has yet to pick up for a merchant with
  an endpoint, is never deleted.
- Ages are measured on the database's clock, the one that stamped `received_at` and
  `created_at`: a caller's `now` (a simulation's, in the demo and the tests) never counts.
- Every statement names one merchant and deletes at most `batch_rows` rows, in a transaction
  of its own, taking its rows `FOR UPDATE SKIP LOCKED` (two processes purging one merchant
  share the work). A purge stops when a batch comes back short, or after `budget_s`.
- 0 days keeps everything.

Why deleting applied webhooks is safe: the inbox row is what turns a repeat of a webhook id
into a replay at ingest, so once it is gone a very late repeat (a sender retrying after the
retention period, or a captured Shopify-, WooCommerce- or Saleor-style request, which carry no
signed timestamp) is stored again as new and applied by a worker. That application does
nothing: `program.service.apply_events` first inserts each event id (the webhook id) into
`program_applied_events` with `ON CONFLICT DO NOTHING` and goes no further for an id that was
there, so no ledger entry, order, action or outbox event is written a second time; that table
has no retention. `tests/plugin/test_retention.py` replays a purged webhook end to end.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection

PURGE_BATCH_ROWS = 5_000
PURGE_BUDGET_S = 1.0  # per merchant, per purge; a purge overruns it by one batch at most

# MATERIALIZED: each batch is chosen once. As an `IN (subquery)`, the planner may run it again
# for every row it joins (a nested-loop semi-join), and each run skips the rows the statement
# has deleted so far, so a batch had no bound (seen: 7 rows deleted under LIMIT 3).
DELETE_OLD_INBOX_ROWS = """
WITH batch AS MATERIALIZED (
    SELECT webhook_id FROM inbox
    WHERE merchant_id = $1 AND status IN ('applied', 'ignored')
      AND received_at < now() - make_interval(days => $2)
    ORDER BY received_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
DELETE FROM inbox i USING batch
WHERE i.merchant_id = $1 AND i.webhook_id = batch.webhook_id
"""


def _purge_outbox_head(head: str) -> str:
    """A statement deleting, of the outbox ids `head` selects (one merchant's, at most $3, the
    oldest first), the events created over $2 days ago. Only those are locked, and skipped if
    another purge has them. Outbox ids are handed out in time order, so a head with young
    events in it is the last batch, and a purge that is caught up reads one head, not the
    merchant's history."""
    return f"""
WITH head AS MATERIALIZED ({head}),
batch AS MATERIALIZED (
    SELECT o.outbox_id FROM outbox o JOIN head USING (outbox_id)
    WHERE o.merchant_id = $1 AND o.created_at < now() - make_interval(days => $2)
    FOR UPDATE OF o SKIP LOCKED)
DELETE FROM outbox o USING batch WHERE o.merchant_id = $1 AND o.outbox_id = batch.outbox_id
"""


def _delivered(merchant_id: str, limit: str) -> str:
    """The merchant's first `limit` delivered events (the partial index of migration 0010)."""
    return f"""
    SELECT outbox_id FROM outbox_deliveries
    WHERE merchant_id = {merchant_id} AND status = 'delivered'
    ORDER BY outbox_id
    LIMIT {limit}"""


def _undispatched(merchant_id: str, limit: str) -> str:
    """The merchant's first `limit` events no dispatcher has taken (the partial index of
    migration 0011)."""
    return f"""
    SELECT outbox_id FROM outbox
    WHERE merchant_id = {merchant_id} AND NOT dispatched
    ORDER BY outbox_id
    LIMIT {limit}"""


DELETE_OLD_DELIVERED_EVENTS = _purge_outbox_head(_delivered("$1", "$3"))

# Whether the merchant has an endpoint. For SHARE: `set_endpoint` waits until this batch is
# committed. No row (a merchant known to the program only) means no endpoint.
LOCK_MERCHANT_ENDPOINT = (
    "SELECT endpoint_url IS NOT NULL FROM merchants WHERE merchant_id = $1 FOR SHARE"
)

DELETE_OLD_UNDELIVERABLE_EVENTS = _purge_outbox_head(_undispatched("$1", "$3"))

# The due probes of the two purges, for the upkeep (see `ledger.operations.HAS_DUE_RELEASES`),
# with the retention days on its row `upkeep` too. Like the purges, they count ages on the
# database's clock, and look at the head of what a purge would read: its first row.
HAS_OLD_INBOX_ROWS = """(upkeep.inbox_retention_days > 0 AND EXISTS (
    SELECT 1 FROM inbox i
    WHERE i.merchant_id = upkeep.merchant_id AND i.status IN ('applied', 'ignored')
      AND i.received_at < now() - make_interval(days => upkeep.inbox_retention_days)))"""


def _old_outbox_event(head: str) -> str:
    """SQL: is the outbox event `head` selects old enough to purge?"""
    return f"""EXISTS (
        SELECT 1 FROM outbox o
        WHERE o.merchant_id = upkeep.merchant_id AND o.outbox_id = ({head})
          AND o.created_at < now() - make_interval(days => upkeep.outbox_retention_days))"""


HAS_OLD_OUTBOX_EVENTS = f"""(upkeep.outbox_retention_days > 0 AND (
    {_old_outbox_event(_delivered("upkeep.merchant_id", "1"))}
    OR (NOT EXISTS (
            SELECT 1 FROM merchants e
            WHERE e.merchant_id = upkeep.merchant_id AND e.endpoint_url IS NOT NULL)
        AND {_old_outbox_event(_undispatched("upkeep.merchant_id", "1"))})))"""

Batch = Callable[[PgConnection, str, int, int], Awaitable[int]]


async def purge_inbox(
    engine: AsyncEngine,
    merchant_id: str,
    *,
    retention_days: int,
    batch_rows: int = PURGE_BATCH_ROWS,
    budget_s: float = PURGE_BUDGET_S,
) -> int:
    """Delete the merchant's applied and ignored webhooks received more than `retention_days`
    ago; returns how many were deleted."""
    deadline_s = time.monotonic() + budget_s
    return await _in_batches(
        engine, _delete_inbox, merchant_id, retention_days, batch_rows, deadline_s
    )


async def purge_outbox(
    engine: AsyncEngine,
    merchant_id: str,
    *,
    retention_days: int,
    batch_rows: int = PURGE_BATCH_ROWS,
    budget_s: float = PURGE_BUDGET_S,
) -> int:
    """Delete the merchant's outbox events created more than `retention_days` ago that were
    delivered, or that nothing will deliver (no delivery, no endpoint); returns how many."""
    deadline_s = time.monotonic() + budget_s
    delivered = await _in_batches(
        engine, _delete_delivered, merchant_id, retention_days, batch_rows, deadline_s
    )
    return delivered + await _in_batches(
        engine, _delete_undeliverable, merchant_id, retention_days, batch_rows, deadline_s
    )


async def _in_batches(
    engine: AsyncEngine,
    batch: Batch,
    merchant_id: str,
    retention_days: int,
    batch_rows: int,
    deadline_s: float,
) -> int:
    """Run `batch` (each in its own transaction) until one deletes fewer than `batch_rows`
    rows or `deadline_s` (on the monotonic clock) has passed; at least once."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    if retention_days == 0:
        return 0
    total = 0
    while True:
        deleted = await db.run_in_transaction(
            engine, batch, merchant_id, retention_days, batch_rows
        )
        total += deleted
        if deleted < batch_rows or time.monotonic() >= deadline_s:
            return total


async def _delete_inbox(pg: PgConnection, merchant_id: str, days: int, batch_rows: int) -> int:
    return db.rows_affected(await pg.execute(DELETE_OLD_INBOX_ROWS, merchant_id, days, batch_rows))


async def _delete_delivered(pg: PgConnection, merchant_id: str, days: int, batch_rows: int) -> int:
    return db.rows_affected(
        await pg.execute(DELETE_OLD_DELIVERED_EVENTS, merchant_id, days, batch_rows)
    )


async def _delete_undeliverable(
    pg: PgConnection, merchant_id: str, days: int, batch_rows: int
) -> int:
    if await pg.fetchval(LOCK_MERCHANT_ENDPOINT, merchant_id):
        return 0
    return db.rows_affected(
        await pg.execute(DELETE_OLD_UNDELIVERABLE_EVENTS, merchant_id, days, batch_rows)
    )
