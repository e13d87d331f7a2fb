"""Background upkeep for every merchant: the ledger's jobs (reservation timeouts, releases,
expiry, sealing), the program's (tier reviews, expiry reminders, inactivity expiry) and the
webhook plugin's retention (old inbox rows and outbox events deleted).
`pointguard serve` runs a pass every few seconds; `pointguard upkeep` runs one.

Rules this module enforces:
- A pass visits only the merchants with work due, found in one statement: each job has a due
  probe beside it (an `EXISTS` that an index serves), and the statement asks every merchant's
  probes at once. An idle pass costs that statement, not a few transactions per merchant.
- A due merchant gets every job of each part of the pass (ledger, program, retention) with
  something due: a job with nothing to do costs a lookup or two.
- A job that fails is logged; the others still run.
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
from pointguard.db import PgConnection
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import HAS_UNSEALED_ENTRIES, logged_job, maintain_merchant
from pointguard.ledger.reading import SELECT_LEDGER_MERCHANTS
from pointguard.plugin.retention import (
    HAS_OLD_INBOX_ROWS,
    HAS_OLD_OUTBOX_EVENTS,
    purge_inbox,
    purge_outbox,
)
from pointguard.program.expiry import (
    HAS_DUE_INACTIVITY_EXPIRY,
    HAS_DUE_REMINDERS,
    expire_inactive,
    send_expiry_reminders,
)
from pointguard.program.outbox import write_entry_events
from pointguard.program.tiers.review import HAS_DUE_TIER_REVIEWS, review_tiers

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

PROGRAM_JOBS = (
    ("tiers changed", review_tiers),
    ("expiry reminders", send_expiry_reminders),
    ("inactivity points expired", expire_inactive),
)
# Each part of the pass and the due probes of its jobs: SQL conditions on the row `upkeep`
# (`merchant_id`, `now`, `inbox_retention_days`, `outbox_retention_days`).
DUE_PROBES = {
    "ledger": (
        ops.HAS_TIMED_OUT_HOLDS,
        ops.HAS_DUE_RELEASES,
        ops.HAS_DUE_EXPIRIES,
        HAS_UNSEALED_ENTRIES,
    ),
    "program": (HAS_DUE_TIER_REVIEWS, HAS_DUE_REMINDERS, HAS_DUE_INACTIVITY_EXPIRY),
    "retention": (HAS_OLD_INBOX_ROWS, HAS_OLD_OUTBOX_EVENTS),
}
# A session lock, held on its own connection for the pass.
TRY_LOCK_UPKEEP = "SELECT pg_try_advisory_lock(hashtext('pointguard:upkeep'))"
UNLOCK_UPKEEP = "SELECT pg_advisory_unlock(hashtext('pointguard:upkeep'))"


def _select_due(merchants: str) -> str:
    """The statement of the merchants of `merchants` (a query of `merchant_id`s) with work due
    at $1 (retention days $2 for the inbox, $3 for the outbox), with a column per part of the
    pass saying whether it is due. MATERIALIZED: the filter reads the parts' columns, where a
    flattened query would run every probe twice."""
    parts = ",\n           ".join(
        f"({' OR '.join(probes)}) AS {part}" for part, probes in DUE_PROBES.items()
    )
    return f"""
WITH due AS MATERIALIZED (
    SELECT upkeep.merchant_id,
           {parts}
    FROM (SELECT merchant_id, $1::timestamptz AS now, $2::integer AS inbox_retention_days,
                 $3::integer AS outbox_retention_days
          FROM ({merchants}) known) upkeep
)
SELECT * FROM due WHERE {" OR ".join(DUE_PROBES)} ORDER BY merchant_id
"""


# Every merchant the ledger, the program versions or the webhook plugin know (the program's
# alone still fill the outbox).
SELECT_DUE_MERCHANTS = _select_due(f"""
{SELECT_LEDGER_MERCHANTS}
UNION SELECT merchant_id FROM program_versions
UNION SELECT merchant_id FROM merchants""")
SELECT_DUE_MERCHANT = _select_due("SELECT $4::text AS merchant_id")


async def merchants_due(
    pg: PgConnection, now: datetime, settings: Settings, merchant_id: str | None = None
) -> list[dict[str, bool]]:
    """The merchants with work due at `now` (only `merchant_id`, if given), each a row of the
    merchant id and whether each part of the pass (`DUE_PROBES`) is due for it."""
    days = (settings.inbox_retention_days, settings.outbox_retention_days)
    if merchant_id is None:
        rows = await pg.fetch(SELECT_DUE_MERCHANTS, now, *days)
    else:
        rows = await pg.fetch(SELECT_DUE_MERCHANT, now, *days, merchant_id)
    return [dict(r) for r in rows]


async def upkeep_pass(
    engine: AsyncEngine,
    now: datetime,
    *,
    settings: Settings | None = None,
    merchant_id: str | None = None,
) -> dict[str, object]:
    """One pass; returns what each due merchant's jobs did (nothing for the others). `now` is
    the clock of the ledger's and the program's jobs; retention counts ages on the database's
    clock (see `plugin/retention.py`). `merchant_id`: that merchant's jobs only (the demo's
    simulated clock must not release or expire anyone else's points)."""
    settings = settings or load_settings()
    async with db.connection(engine) as pg:
        due = await merchants_due(pg, now, settings, merchant_id)
    done: dict[str, object] = {}
    for row in due:
        merchant = str(row["merchant_id"])
        if row["ledger"]:
            done[merchant] = await maintain_merchant(
                engine, merchant, now, on_released=write_entry_events
            )
        if row["program"]:
            for name, job in PROGRAM_JOBS:
                work = db.run_in_transaction(engine, job, merchant, now=now)
                await _note(done, merchant, name, work)
        if row["retention"]:
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
    the upkeep loop: without the lock, N processes would do N times the same work, every job
    safe to repeat but none useful twice."""
    async with db.connection(engine) as pg:
        if not await pg.fetchval(TRY_LOCK_UPKEEP):
            return None
        try:
            return await upkeep_pass(engine, settings.clock(), settings=settings)
        finally:
            await pg.execute(UNLOCK_UPKEEP)


async def _counted(table: str, purge: Awaitable[int]) -> int:
    purged = await purge
    metrics.count_purged(table, purged)
    return purged


async def _note(
    done: dict[str, object], merchant_id: str, name: str, work: Awaitable[ResultT]
) -> None:
    """Run one merchant's job and note its result as `done["{merchant} {name}"]`; a job that
    fails is logged and noted nowhere (`logged_job`), and the pass goes on."""
    result = await logged_job(merchant_id, name, work)
    if result is not None:
        done[f"{merchant_id} {name}"] = result
