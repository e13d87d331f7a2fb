"""A worker process for tests: drains one merchant's inbox through the guard, with a fixed
identity key, then prints how many rows it applied.

Usage: python -m tests.fraud.drain_inbox DATABASE_URL MERCHANT_ID NOW_ISO BATCH_SIZE
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

from pointguard import db
from pointguard.fraud.guard import Guard
from pointguard.plugin.worker import process_merchant

IDENTITY_KEY = b"w" * 32
COUNT_PENDING = "SELECT count(*) FROM inbox WHERE merchant_id = $1 AND status = 'pending'"


async def _identity_key(pg: db.PgConnection, merchant_id: str) -> bytes:
    return IDENTITY_KEY


async def drain(url: str, merchant_id: str, now: datetime, batch_size: int) -> int:
    """Apply batches until no row is pending; a batch another process holds is skipped."""
    engine = db.create_engine(url, pool_size=2)
    guard = Guard(_identity_key)
    applied = 0
    try:
        while True:
            done = await process_merchant(
                engine, merchant_id, now=now, limit=batch_size, guard=guard
            )
            applied += done.applied
            if not done.applied:
                async with db.connection(engine) as pg:
                    if not await pg.fetchval(COUNT_PENDING, merchant_id):
                        return applied
                await asyncio.sleep(0.01)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, merchant, now, size = sys.argv[1:5]
    print(asyncio.run(drain(url, merchant, datetime.fromisoformat(now), int(size))))
