"""Background upkeep for every merchant: the ledger's jobs (reservation timeouts, releases,
expiry, sealing), the program's (tier reviews, expiry reminders, inactivity expiry) and the
webhook plugin's retention (old inbox rows and outbox events deleted).
`pointguard serve` runs a pass every few seconds; `pointguard upkeep` runs one. A job that
fails is logged; the others still run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db, metrics
from pointguard.config import Settings, load_settings
from pointguard.errors import PointGuardError
from pointguard.ledger.maintenance import maintain_all
from pointguard.plugin.retention import purge_inbox, purge_outbox
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
# A session lock, held on its own connection for the pass.
TRY_UPKEEP_LOCK = "SELECT pg_try_advisory_lock(hashtext('pointguard:upkeep'))"
UPKEEP_UNLOCK = "SELECT pg_advisory_unlock(hashtext('pointguard:upkeep'))"
RETENTION_JOBS = {"inbox": "inbox rows purged", "outbox": "outbox events purged"}
# Merchants of the webhook plugin, and of the program alone (whose outbox still fills).
RETENTION_MERCHANTS = """
SELECT merchant_id FROM merchants UNION SELECT merchant_id FROM program_versions ORDER BY 1
"""


async def upkeep_pass(
    engine: AsyncEngine, now: datetime | None = None, *, settings: Settings | None = None
) -> dict[str, object]:
    """One pass; returns what each merchant's jobs did. `now` is the clock of the ledger's and
    the program's jobs; retention counts ages on the database's clock (see
    `plugin/retention.py`)."""
    now = now or datetime.now(UTC)
    settings = settings or load_settings()
    done: dict[str, object] = dict(await maintain_all(engine, now, on_released=write_entry_events))
    for merchant_id in await _merchants(engine, PROGRAM_MERCHANTS):
        for name, job in PROGRAM_JOBS:
            await _job(
                done, merchant_id, name, db.run_in_transaction(engine, job, merchant_id, now=now)
            )
    for merchant_id in await _merchants(engine, RETENTION_MERCHANTS):
        for table, purge, days in (
            ("inbox", purge_inbox, settings.inbox_retention_days),
            ("outbox", purge_outbox, settings.outbox_retention_days),
        ):
            await _job(
                done,
                merchant_id,
                RETENTION_JOBS[table],
                _counted(table, purge(engine, merchant_id, retention_days=days)),
            )
    return done


async def upkeep_forever(
    engine: AsyncEngine, *, interval_s: float, settings: Settings | None = None
) -> None:
    """A pass every `interval_s` by whichever process holds the upkeep lock; a pass that fails
    (database away) is logged, the next one tries again."""
    while True:
        try:
            await exclusive_upkeep_pass(engine, settings=settings)
        except (asyncpg.PostgresError, SQLAlchemyError, OSError) as error:
            log.error("upkeep pass failed error=%r", error)
        await asyncio.sleep(interval_s)


async def exclusive_upkeep_pass(
    engine: AsyncEngine, *, settings: Settings | None = None
) -> dict[str, object] | None:
    """A pass, unless another process is running one (None then). Every server process runs
    the upkeep loop, and each pass visits every merchant: without the lock, N processes would
    do N times the same work, every job safe to repeat but none useful twice."""
    async with db.connection(engine) as pg:
        if not await pg.fetchval(TRY_UPKEEP_LOCK):
            return None
        try:
            return await upkeep_pass(engine, settings=settings)
        finally:
            await pg.execute(UPKEEP_UNLOCK)


async def _counted(table: str, purge: Awaitable[int]) -> int:
    purged = await purge
    metrics.count_purged(table, purged)
    return purged


async def _merchants(engine: AsyncEngine, query: str) -> list[str]:
    async with db.connection(engine) as pg:
        return [r["merchant_id"] for r in await pg.fetch(query)]


async def _job(
    done: dict[str, object], merchant_id: str, name: str, work: Awaitable[object]
) -> None:
    """Await one merchant's job and note its result as `done["{merchant} {name}"]`; a job
    that fails is logged and noted nowhere, and the pass goes on."""
    try:
        done[f"{merchant_id} {name}"] = await work
    except (PointGuardError, asyncpg.PostgresError) as error:
        log.error("upkeep job failed merchant=%s job=%s error=%r", merchant_id, name, error)
