"""Child process for test_crash_safety.py: posts batches of earns until it is killed.

    python crash_child.py DATABASE_URL MERCHANT_ID BATCH_SIZE [HANG_AT]

Batch n holds BATCH_SIZE earns with keys `batch{n}-{i}`, posted in one transaction; after each
commit the child prints `committed {n}`. It prints `pid {backend pid}` for every database
connection it uses. With HANG_AT, batch HANG_AT is posted but never committed: the child
prints `inflight {n}` and sleeps inside the open transaction until it is killed.

A safety limit ends the child on its own if no one kills it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from pointguard import db
from pointguard.ledger import NewEntry, post_entries
from pointguard.ledger.operations import earn_entry

MEMBERS = 5
MAX_SECONDS = 60


def batch(merchant_id: str, n: int, size: int) -> list[NewEntry]:
    """Batch n: member-(i % 5) earns n + 1 points per entry."""
    return [
        earn_entry(
            merchant_id,
            f"member-{i % MEMBERS}",
            n + 1,
            key=f"batch{n}-{i}",
            description=f"crash test batch {n} entry {i}",
            source="crash_child",
        )
        for i in range(size)
    ]


async def main(url: str, merchant_id: str, size: int, hang_at: int | None) -> None:
    engine = db.create_engine(url, pool_size=1)
    seen_pids: set[int] = set()
    deadline = time.monotonic() + MAX_SECONDS

    def report_pid(pg: db.PgConnection) -> None:
        pid = pg.get_server_pid()
        if pid not in seen_pids:
            seen_pids.add(pid)
            print(f"pid {pid}", flush=True)

    n = 0
    while time.monotonic() < deadline:
        entries = batch(merchant_id, n, size)
        if n == hang_at:
            async with db.connection(engine) as pg, pg.transaction():
                report_pid(pg)
                await post_entries(pg, entries)
                print(f"inflight {n}", flush=True)
                await asyncio.sleep(MAX_SECONDS)
            raise SystemExit("not killed while hanging")

        async def work(pg: db.PgConnection, entries: list[NewEntry] = entries) -> None:
            report_pid(pg)
            await post_entries(pg, entries)

        await db.in_transaction(engine, work)
        print(f"committed {n}", flush=True)
        n += 1
    raise SystemExit("not killed in time")


if __name__ == "__main__":
    url, merchant_id, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hang_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(url, merchant_id, size, hang_at))
