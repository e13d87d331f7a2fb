"""The ledger's upkeep, per merchant: void timed-out reservations, release pending earns whose
time has come, expire lots, then seal what was posted. `pointguard.upkeep` runs it with the
other parts' jobs. Each step is its own transaction, so one merchant's trouble does not hold up
the others, and each is safe to run from several processes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.errors import PointGuardError
from pointguard.ledger import operations as ops
from pointguard.ledger.entries import PostedEntry
from pointguard.ledger.seal import MAX_SEAL_BATCH, seal

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

# The due probe of `seal_all` (see `operations.HAS_DUE_RELEASES`): entries not sealed yet.
HAS_UNSEALED_ENTRIES = """EXISTS (
    SELECT 1 FROM ledger_entries e
    WHERE e.merchant_id = upkeep.merchant_id AND e.seal_seq IS NULL)"""


@dataclass
class MaintenanceCounts:
    voided: int = 0
    released: int = 0
    expired_points: int = 0
    sealed: int = 0


# Called in the release's own transaction with the entries it posted: how the layers above
# tell the storefront (the ledger knows nothing of outboxes), exactly when the release commits.
OnReleased = Callable[[PgConnection, str, list[PostedEntry]], Awaitable[None]]


async def maintain_merchant(
    engine: AsyncEngine, merchant_id: str, now: datetime, *, on_released: OnReleased | None = None
) -> MaintenanceCounts:
    """One pass for one merchant. A job that fails is logged and the others still run."""

    async def release(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
        released = await ops.release_due(pg, merchant_id, now=now)
        if on_released is not None and released:
            await on_released(pg, merchant_id, released)
        return len(released)

    jobs: tuple[tuple[str, Callable[..., Awaitable[int]]], ...] = (
        ("voided", ops.void_timed_out),
        ("released", release),
        ("expired_points", ops.expire_due),
    )
    counts = MaintenanceCounts()
    for name, job in jobs:
        done = await logged_job(
            merchant_id, name, db.run_in_transaction(engine, job, merchant_id, now=now)
        )
        if done is not None:
            setattr(counts, name, done)
    counts.sealed = await seal_all(engine, merchant_id)
    return counts


async def logged_job(merchant_id: str, name: str, work: Awaitable[ResultT]) -> ResultT | None:
    """Await one merchant's upkeep job; a job that fails is logged (None then), so that the
    other jobs and merchants of the pass still run."""
    try:
        return await work
    except (PointGuardError, asyncpg.PostgresError) as error:
        log.error("upkeep job failed merchant=%s job=%s error=%r", merchant_id, name, error)
        return None


async def seal_all(engine: AsyncEngine, merchant_id: str) -> int:
    """Seal until caught up, a bounded batch per transaction."""
    total = 0
    while True:
        sealed = await db.run_in_transaction(engine, seal, merchant_id, limit=MAX_SEAL_BATCH)
        total += sealed
        if sealed < MAX_SEAL_BATCH:
            return total
