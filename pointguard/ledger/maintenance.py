"""The ledger's upkeep, per merchant: void timed-out reservations, release pending earns whose
time has come, expire lots, then seal what was posted. `pointguard.upkeep` runs it with the
other parts' jobs. Each step is its own transaction, so one merchant's trouble does not hold up
the others, and each is safe to run from several processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
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


JOBS = (
    ("voided", ops.void_timed_out),
    ("released", ops.release_due),
    ("expired_points", ops.expire_due),
)


async def maintain_merchant(
    engine: AsyncEngine, merchant_id: str, now: datetime
) -> MaintenanceCounts:
    """One pass for one merchant. A job that fails is logged and the others still run."""
    counts = MaintenanceCounts()
    for name, job in JOBS:
        try:
            setattr(counts, name, await db.run_in_transaction(engine, job, merchant_id, now=now))
        except (PointGuardError, asyncpg.PostgresError) as error:
            log.error("upkeep job failed merchant=%s job=%s error=%r", merchant_id, name, error)
    counts.sealed = await seal_all(engine, merchant_id)
    return counts


async def seal_all(engine: AsyncEngine, merchant_id: str) -> int:
    """Seal until caught up, a bounded batch per transaction."""
    total = 0
    while True:
        sealed = await db.run_in_transaction(engine, seal, merchant_id, limit=MAX_SEAL_BATCH)
        total += sealed
        if sealed < MAX_SEAL_BATCH:
            return total


async def maintain_all(
    engine: AsyncEngine, now: datetime | None = None
) -> dict[str, MaintenanceCounts]:
    """One pass over every merchant."""
    now = now or datetime.now(UTC)
    async with db.connection(engine) as pg:
        merchants = await ledger_merchants(pg)
    return {m: await maintain_merchant(engine, m, now) for m in merchants}
