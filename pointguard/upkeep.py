"""Background upkeep for every merchant: the ledger's jobs (reservation timeouts, releases,
expiry, sealing) and the program's (tier reviews, expiry reminders, inactivity expiry).
`pointguard serve` runs a pass every few seconds; `pointguard upkeep` runs one. A job that
fails is logged; the others still run.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.errors import PointGuardError
from pointguard.ledger.maintenance import maintain_all
from pointguard.program.expiry import expire_inactive, send_expiry_reminders
from pointguard.program.outbox import write_entry_events
from pointguard.program.standing import review_tiers

log = logging.getLogger(__name__)

PROGRAM_MERCHANTS = "SELECT DISTINCT merchant_id FROM program_versions ORDER BY 1"
PROGRAM_JOBS = (
    ("tiers changed", review_tiers),
    ("expiry reminders", send_expiry_reminders),
    ("inactivity points expired", expire_inactive),
)


async def upkeep_pass(engine: AsyncEngine, now: datetime | None = None) -> dict[str, object]:
    """One pass; returns what each merchant's jobs did."""
    now = now or datetime.now(UTC)
    done: dict[str, object] = dict(await maintain_all(engine, now, on_released=write_entry_events))
    async with db.connection(engine) as pg:
        merchants = [r["merchant_id"] for r in await pg.fetch(PROGRAM_MERCHANTS)]
    for merchant_id in merchants:
        for name, job in PROGRAM_JOBS:
            try:
                result = await db.run_in_transaction(engine, job, merchant_id, now=now)
            except (PointGuardError, asyncpg.PostgresError) as error:
                log.error("upkeep job failed merchant=%s job=%s error=%r", merchant_id, name, error)
                continue
            done[f"{merchant_id} {name}"] = result
    return done


async def upkeep_forever(engine: AsyncEngine, *, interval_s: float) -> None:
    """A pass every `interval_s`; a pass that fails (database away) is logged, the next one
    tries again."""
    while True:
        try:
            await upkeep_pass(engine)
        except (asyncpg.PostgresError, SQLAlchemyError, OSError) as error:
            log.error("upkeep pass failed error=%r", error)
        await asyncio.sleep(interval_s)
