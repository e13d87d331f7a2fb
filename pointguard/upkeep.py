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
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db, metrics
from pointguard.config import Settings, load_settings
from pointguard.ledger.maintenance import logged_job, maintain_merchant
from pointguard.ledger.reading import ledger_merchants
from pointguard.plugin.retention import purge_inbox, purge_outbox
from pointguard.program.expiry import expire_inactive, send_expiry_reminders
from pointguard.program.outbox import write_entry_events
from pointguard.program.standing import review_tiers

log = logging.getLogger(__name__)
T = TypeVar("T")

PROGRAM_MERCHANTS = "SELECT DISTINCT merchant_id FROM program_versions ORDER BY 1"
PROGRAM_JOBS = (
    ("tiers changed", review_tiers),
    ("expiry reminders", send_expiry_reminders),
    ("inactivity points expired", expire_inactive),
)
# A session lock, held on its own connection for the pass.
TRY_UPKEEP_LOCK = "SELECT pg_try_advisory_lock(hashtext('pointguard:upkeep'))"
UPKEEP_UNLOCK = "SELECT pg_advisory_unlock(hashtext('pointguard:upkeep'))"
# Merchants of the webhook plugin, and of the program alone (whose outbox still fills).
RETENTION_MERCHANTS = """
SELECT merchant_id FROM merchants UNION SELECT merchant_id FROM program_versions ORDER BY 1
"""


async def upkeep_pass(
    engine: AsyncEngine,
    now: datetime,
    *,
    settings: Settings | None = None,
    merchant_id: str | None = None,
) -> dict[str, object]:
    """One pass; returns what each merchant's jobs did. `now` is the clock of the ledger's and
    the program's jobs; retention counts ages on the database's clock (see
    `plugin/retention.py`). `merchant_id`: that merchant's jobs only (the demo's simulated
    clock must not release or expire anyone else's points)."""
    settings = settings or load_settings()
    done: dict[str, object] = {}
    async with db.connection(engine) as pg:
        ledger = await ledger_merchants(pg)
        program = [r["merchant_id"] for r in await pg.fetch(PROGRAM_MERCHANTS)]
        retention = [r["merchant_id"] for r in await pg.fetch(RETENTION_MERCHANTS)]
    for merchant in _only(ledger, merchant_id):
        done[merchant] = await maintain_merchant(
            engine, merchant, now, on_released=write_entry_events
        )
    for merchant in _only(program, merchant_id):
        for name, job in PROGRAM_JOBS:
            work = db.run_in_transaction(engine, job, merchant, now=now)
            await _note(done, merchant, name, work)
    for merchant in _only(retention, merchant_id):
        for table, name, purge, days in (
            ("inbox", "inbox rows purged", purge_inbox, settings.inbox_retention_days),
            ("outbox", "outbox events purged", purge_outbox, settings.outbox_retention_days),
        ):
            work = _counted(table, purge(engine, merchant, retention_days=days))
            await _note(done, merchant, name, work)
    return done


async def upkeep_forever(engine: AsyncEngine, *, interval_s: float, settings: Settings) -> None:
    """A pass every `interval_s` by whichever process holds the upkeep lock; a pass that fails
    (database away) is logged, the next one tries again."""
    while True:
        try:
            await exclusive_upkeep_pass(engine, settings=settings)
        except db.DATABASE_UNAVAILABLE as error:
            log.error("upkeep pass failed error=%r", error)
        await asyncio.sleep(interval_s)


async def exclusive_upkeep_pass(
    engine: AsyncEngine, *, settings: Settings
) -> dict[str, object] | None:
    """A pass, unless another process is running one (None then). Every server process runs
    the upkeep loop, and each pass visits every merchant: without the lock, N processes would
    do N times the same work, every job safe to repeat but none useful twice."""
    async with db.connection(engine) as pg:
        if not await pg.fetchval(TRY_UPKEEP_LOCK):
            return None
        try:
            return await upkeep_pass(engine, settings.clock(), settings=settings)
        finally:
            await pg.execute(UPKEEP_UNLOCK)


async def _counted(table: str, purge: Awaitable[int]) -> int:
    purged = await purge
    metrics.count_purged(table, purged)
    return purged


def _only(merchants: list[str], merchant_id: str | None) -> list[str]:
    return merchants if merchant_id is None else [m for m in merchants if m == merchant_id]


async def _note(done: dict[str, object], merchant_id: str, name: str, work: Awaitable[T]) -> None:
    """Run one merchant's job and note its result as `done["{merchant} {name}"]`; a job that
    fails is logged and noted nowhere (`logged_job`), and the pass goes on."""
    result = await logged_job(merchant_id, name, work)
    if result is not None:
        done[f"{merchant_id} {name}"] = result
