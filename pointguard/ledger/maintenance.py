"""Background upkeep, per merchant: void timed-out reservations, release pending earns whose
time has come, expire lots, then seal what was posted. `pointguard serve` runs it every few
seconds; `pointguard ledger maintain` runs one pass. Each step is its own transaction, so one
merchant's trouble does not hold up the others, and each is safe to run from several processes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.errors import PointGuardError
from pointguard.ledger import operations as ops
from pointguard.ledger.reading import ledger_merchants
from pointguard.ledger.seal import MAX_SEAL_BATCH, seal

log = logging.getLogger(__name__)


@dataclass
class MaintenanceCounts:
    voided: int = 0
    released: int = 0
    expired_points: int = 0
    sealed: int = 0


async def maintain_merchant(
    engine: AsyncEngine, merchant_id: str, now: datetime
) -> MaintenanceCounts:
    counts = MaintenanceCounts()
    counts.voided = await db.run_in_transaction(engine, ops.void_timed_out, merchant_id, now=now)
    counts.released = await db.run_in_transaction(engine, ops.release_due, merchant_id, now=now)
    counts.expired_points = await db.run_in_transaction(
        engine, ops.expire_due, merchant_id, now=now
    )
    while True:  # seal until caught up, a bounded batch per transaction
        sealed = await db.run_in_transaction(engine, seal, merchant_id, limit=MAX_SEAL_BATCH)
        counts.sealed += sealed
        if sealed < MAX_SEAL_BATCH:
            return counts


async def maintain_all(
    engine: AsyncEngine, now: datetime | None = None
) -> dict[str, MaintenanceCounts]:
    """One pass over every merchant. A merchant whose pass fails is logged and skipped."""
    now = now or datetime.now(UTC)
    async with db.connection(engine) as pg:
        merchants = await ledger_merchants(pg)
    done: dict[str, MaintenanceCounts] = {}
    for merchant_id in merchants:
        try:
            done[merchant_id] = await maintain_merchant(engine, merchant_id, now)
        except (PointGuardError, asyncpg.PostgresError) as error:
            log.error("maintenance failed merchant=%s error=%r", merchant_id, error)
    return done


async def maintain_forever(engine: AsyncEngine, *, interval_s: float) -> None:
    """Run `maintain_all` every `interval_s`; a pass that fails (database away) is logged and
    the next one tries again."""
    while True:
        try:
            await maintain_all(engine)
        except (asyncpg.PostgresError, SQLAlchemyError, OSError) as error:
            log.error("maintenance pass failed error=%r", error)
        await asyncio.sleep(interval_s)
