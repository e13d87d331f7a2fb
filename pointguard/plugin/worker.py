"""Workers: apply inbox rows through the program and the ledger, each exactly once.

A worker picks a merchant with due work (every statement names one merchant), claims a batch
of its rows with `FOR UPDATE SKIP LOCKED` (so any number of workers share the load without
applying anything twice), and applies each row in a savepoint of the batch's transaction: the
ledger entries, the program's records, the outbox events and the row's `applied` mark commit
together or not at all. A batch is first tried whole, in one savepoint; only if
something in it fails is it redone row by row. A row whose event the program refuses (an
unknown order, no program) is dead-lettered with the error (and, for a webhook older than the
first program, the commands that apply it); a row that fails for a passing
reason (the database) is retried later with backoff, and dead-lettered after `MAX_ATTEMPTS`.
Through the fraud guard, a worker first takes the merchant's model lock (skipping a merchant
another worker holds), so one batch at a time per merchant is scored and learned, in the
order its rows were claimed (`fraud/model_store.py`). Two workers whose batches touch the same
members can deadlock; the batch PostgreSQL picks as
the victim is run again whole by `in_transaction`, never counted against its rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.clock import wall_clock
from pointguard.db import RETRYABLE_SQLSTATES, PgConnection
from pointguard.errors import PointGuardError, ProgramNotFound
from pointguard.fraud.guard import Guard
from pointguard.fraud.model_store import claim_model
from pointguard.metrics import observe_worker_batch
from pointguard.plugin.merchants import merchant_identity_key
from pointguard.plugin.payloads import decode_envelope, to_program_event
from pointguard.plugin.retry import RetryPolicy
from pointguard.plugin.secretbox import Keys
from pointguard.program.apply import apply_event, apply_events
from pointguard.program.events import Event

log = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_ATTEMPTS = 8
FIRST_RETRY_S = 2  # 2 s … 128 s between tries: about 4 min from first try to dead letter
MAX_RETRY_S = 10 * 60
RETRY_POLICY = RetryPolicy(first_s=FIRST_RETRY_S, max_s=MAX_RETRY_S)
IDLE_SLEEP_S = 0.2

SELECT_MERCHANTS_WITH_DUE_INBOX = """
SELECT DISTINCT merchant_id FROM inbox WHERE status = 'pending' AND next_attempt_at <= $1
"""

CLAIM_DUE_INBOX_ROWS = """
SELECT webhook_id, payload::text AS payload, attempts FROM inbox
WHERE merchant_id = $1 AND status = 'pending' AND next_attempt_at <= $2
ORDER BY received_at, webhook_id
LIMIT $3
FOR UPDATE SKIP LOCKED
"""

SET_INBOX_ROW_OUTCOME = """
UPDATE inbox SET status = $3, attempts = attempts + 1, last_error = $4, applied_at = now()
WHERE merchant_id = $1 AND webhook_id = $2
"""

MARK_INBOX_ROWS_APPLIED = """
UPDATE inbox SET status = 'applied', attempts = attempts + 1, applied_at = now()
WHERE merchant_id = $1 AND webhook_id = ANY($2::text[])
"""

MARK_INBOX_ROW_FOR_RETRY = """
UPDATE inbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4
WHERE merchant_id = $1 AND webhook_id = $2
"""

SELECT_DEAD_INBOX_ROWS = """
SELECT merchant_id, webhook_id, event_type, attempts, last_error, received_at FROM inbox
WHERE status = 'dead' AND ($1::text IS NULL OR merchant_id = $1)
ORDER BY received_at LIMIT $2
"""

REPLAY_DEAD_INBOX_ROW = """
UPDATE inbox SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = now()
WHERE merchant_id = $1 AND webhook_id = $2 AND status = 'dead'
RETURNING webhook_id
"""

REPLAY_DEAD_INBOX_ROWS = """
UPDATE inbox SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = now()
WHERE merchant_id = $1 AND status = 'dead'
"""


@dataclass
class BatchResult:
    applied: int = 0
    dead: int = 0
    retried: int = 0


async def process_merchant(
    engine: AsyncEngine,
    merchant_id: str,
    *,
    now: datetime | None = None,
    limit: int = BATCH_SIZE,
    guard: Guard | None = None,
) -> BatchResult:
    """Claim and apply one batch of one merchant's due rows, through the fraud guard if one is
    given (the server's loop always gives one)."""
    started_s = time.perf_counter()
    done = await db.in_transaction(
        engine, lambda pg: _apply_batch(pg, merchant_id, now or wall_clock(), limit, guard)
    )
    observe_worker_batch(time.perf_counter() - started_s, done.applied, done.dead, done.retried)
    return done


async def _apply_batch(
    pg: PgConnection, merchant_id: str, now: datetime, limit: int, guard: Guard | None
) -> BatchResult:
    if guard is not None and not await claim_model(pg, merchant_id):
        return BatchResult()  # another worker is applying this merchant's batch: skip it
    rows = await pg.fetch(CLAIM_DUE_INBOX_ROWS, merchant_id, now, limit)
    if not rows:
        return BatchResult()
    claimed = [(row, _decode(row)) for row in rows]
    try:
        events = [event for _, decoded in claimed if (event := _event(decoded)) is not None]
        # The common case, all rows good: the program applies the batch set-wise in one
        # savepoint (members locked in one global order), and one update marks the rows.
        async with pg.transaction():
            await apply_events(pg, merchant_id, events, guard=guard)
            await pg.execute(
                MARK_INBOX_ROWS_APPLIED, merchant_id, [row["webhook_id"] for row in rows]
            )
        return BatchResult(applied=len(rows))
    except asyncpg.PostgresError as error:
        if error.sqlstate in RETRYABLE_SQLSTATES:
            raise  # a deadlock all the same: `in_transaction` runs the batch again
    except PointGuardError:
        pass  # the batch is undone; find the bad rows one savepoint at a time
    # Member order here too (each member's own events keep their arrival order), so that
    # workers falling back to single rows still lock members in the global order.
    claimed.sort(key=lambda pair: pair[1][1].member_id if pair[1][1] is not None else "")
    result = BatchResult()
    for row, decoded in claimed:
        webhook_id = row["webhook_id"]
        try:
            async with pg.transaction():  # a savepoint: one row's failure undoes only its work
                await _apply_row(pg, merchant_id, decoded, guard)
        except PointGuardError as error:
            reason = _dead_letter_reason(merchant_id, error)
            await pg.execute(SET_INBOX_ROW_OUTCOME, merchant_id, webhook_id, "dead", reason)
            result.dead += 1
            log.warning(
                "webhook dead-lettered",
                extra={"merchant_id": merchant_id, "webhook_id": webhook_id, "code": error.code},
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate in RETRYABLE_SQLSTATES:
                raise
            attempts = row["attempts"] + 1
            if attempts >= MAX_ATTEMPTS:
                await pg.execute(
                    SET_INBOX_ROW_OUTCOME, merchant_id, webhook_id, "dead", repr(error)
                )
                result.dead += 1
            else:
                retry_at = RETRY_POLICY.next_attempt_at(now, attempts)
                await pg.execute(
                    MARK_INBOX_ROW_FOR_RETRY, merchant_id, webhook_id, repr(error), retry_at
                )
                result.retried += 1
        else:
            await pg.execute(SET_INBOX_ROW_OUTCOME, merchant_id, webhook_id, "applied", None)
            result.applied += 1
    return result


def _dead_letter_reason(merchant_id: str, error: PointGuardError) -> str:
    """The error, and for a webhook dated before any program was in force (a storefront sending
    before the program was loaded, or an example with an old date), how to apply it after all."""
    reason = f"{error.code}: {error}"
    if isinstance(error, ProgramNotFound):
        reason += (
            f"; load one in force by then (`pointguard program load FILE --merchant {merchant_id}"
            f" --effective-from TIME`), then `pointguard inbox replay {merchant_id} --all`"
        )
    return reason


Decoded = tuple[PointGuardError | None, Event | None]


def _decode(row: Any) -> Decoded:
    """The row's program event (None for a type the program ignores), or why it has none."""
    try:
        return None, to_program_event(row["webhook_id"], decode_envelope(row["payload"].encode()))
    except PointGuardError as error:
        return error, None


def _event(decoded: Decoded) -> Event | None:
    error, event = decoded
    if error is not None:
        raise error
    return event


async def _apply_row(
    pg: PgConnection, merchant_id: str, decoded: Decoded, guard: Guard | None
) -> None:
    event = _event(decoded)
    if event is not None:
        await apply_event(pg, merchant_id, event, guard=guard)


async def process_due(
    engine: AsyncEngine, *, now: datetime | None = None, guard: Guard | None = None
) -> BatchResult:
    """One batch for every merchant with due work."""
    now = now or wall_clock()
    async with db.connection(engine) as pg:
        merchants = [r["merchant_id"] for r in await pg.fetch(SELECT_MERCHANTS_WITH_DUE_INBOX, now)]
    total = BatchResult()
    for merchant_id in merchants:
        done = await process_merchant(engine, merchant_id, now=now, guard=guard)
        total.applied += done.applied
        total.dead += done.dead
        total.retried += done.retried
    return total


async def work_forever(engine: AsyncEngine, keys: Keys, *, guarded: bool) -> None:
    """The worker loop of `pointguard worker` and of `serve`: drain, then poll. Every event goes
    through the fraud guard, with each merchant's identity key opened by `keys`, unless the
    operator switched it off (`guarded` False: `POINTGUARD_FRAUD_GUARD=off`), which must not
    pass unnoticed: points are then released unscreened."""
    guard = fraud_guard(keys) if guarded else None
    if guard is None:
        log.warning(
            "POINTGUARD_FRAUD_GUARD=off: this worker applies events WITHOUT the fraud guard;"
            " points are released unscreened (no identity links, no decisions, no holds)"
        )
    while True:
        try:
            done = await process_due(engine, guard=guard)
        except db.DATABASE_UNAVAILABLE as error:
            log.error("worker pass failed error=%r", error)
            done = BatchResult()
        if not done.applied and not done.dead and not done.retried:
            await asyncio.sleep(IDLE_SLEEP_S)


def fraud_guard(keys: Keys) -> Guard:
    """The guard the server applies events through: identity keys from the merchants'
    credentials, opened with the server's keyring."""

    async def identity_key(pg: PgConnection, merchant_id: str) -> bytes:
        return await merchant_identity_key(pg, keys, merchant_id)

    return Guard(identity_key)


async def dead_letters(
    pg: PgConnection, merchant_id: str | None = None, limit: int = 100
) -> list[dict[str, object]]:
    return [dict(r) for r in await pg.fetch(SELECT_DEAD_INBOX_ROWS, merchant_id, limit)]


async def replay_dead_letter(pg: PgConnection, merchant_id: str, webhook_id: str) -> bool:
    """Put a dead-lettered webhook back in the queue; False if there is no such dead letter."""
    return await pg.fetchval(REPLAY_DEAD_INBOX_ROW, merchant_id, webhook_id) is not None


async def replay_dead_letters(pg: PgConnection, merchant_id: str) -> int:
    """Put every dead-lettered webhook of the merchant back in the queue; how many."""
    return db.rows_affected(await pg.execute(REPLAY_DEAD_INBOX_ROWS, merchant_id))
