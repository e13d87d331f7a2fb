"""The inbox: every verified webhook, recorded once per (merchant, webhook id) and committed
before the sender hears 202. A replay of the same id changes nothing and is told how the
first one stands.

Rows are written by group commit (`InboxWriter`): a commit waits for the WAL to reach the disk,
and one commit per request caps a server at a few hundred webhooks a second however fast
everything else is. Each request still hears 202 only once its own row has committed. Like
every write, a commit holds one merchant's rows only (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection

RECORD = """
INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, status)
SELECT $1, webhook_id, event_type, payload::jsonb, status
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
     WITH ORDINALITY AS r(webhook_id, event_type, payload, status, n)
ORDER BY n
ON CONFLICT (merchant_id, webhook_id) DO NOTHING
RETURNING webhook_id, status
"""

EXISTING = """
SELECT webhook_id, status FROM inbox WHERE merchant_id = $1 AND webhook_id = ANY($2::text[])
"""

MAX_BATCH = 500
# Merchants written at once by one writer: enough for their commits to reach the disk together,
# few enough to leave the pool's connections to the workers and the dispatcher.
MAX_CONNECTIONS = 4


@dataclass(frozen=True)
class InboxRow:
    merchant_id: str
    webhook_id: str
    event_type: str
    payload: str  # JSON text
    ignored: bool  # a verified event of a type the program has no use for


@dataclass(frozen=True)
class Recorded:
    webhook_id: str
    status: str  # pending, applied, ignored or dead
    replayed: bool


Waiting = tuple[InboxRow, "asyncio.Future[Recorded]"]


class InboxWriter:
    """Group commit: the rows of concurrent requests go to the inbox in one statement per
    merchant.

    A row waits only for the write in flight, if any: under light load each row is written at
    once, alone; under heavy load, every row that arrived during one write goes in the next,
    so a commit serves as many requests as are waiting. The merchants of one write commit
    side by side, each on its own connection (`max_connections` at a time), and PostgreSQL
    flushes their commits to disk together. One bad row (which the checks before it should
    make impossible) does not sink its batch: the batch is then written row by row.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = MAX_BATCH,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._connections = asyncio.Semaphore(max_connections)
        self._waiting: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, row: InboxRow) -> Recorded:
        """Store the row (committed when this returns), or report the first delivery of its
        id. A caller cancelled while waiting may still have its row stored: the sender's retry
        is then answered as a replay."""
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._flusher is None or self._flusher.done():
            # A context of its own: the writer serves every request, not the one that woke it
            # (whose log fields it would otherwise carry).
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            by_merchant: dict[str, list[Waiting]] = {}
            for waiting in batch:
                by_merchant.setdefault(waiting[0].merchant_id, []).append(waiting)
            await asyncio.gather(*(self._write(group) for group in by_merchant.values()))

    async def _write(self, group: list[Waiting]) -> None:
        """Write one merchant's waiting rows and tell each request how its row stands."""
        try:
            async with self._connections, db.connection(self._engine) as pg:
                results = await _write_batch(pg, [row for row, _ in group])
        except Exception as error:  # every waiting request must hear it
            results = [error] * len(group)
        for (_, future), result in zip(group, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


async def _write_batch(pg: PgConnection, rows: Sequence[InboxRow]) -> list[Recorded | Exception]:
    try:
        return list(await _record_rows(pg, rows))
    except asyncpg.PostgresError:
        if len(rows) == 1:
            raise
    results: list[Recorded | Exception] = []
    for row in rows:  # find the bad row; the others are stored all the same
        try:
            results += await _record_rows(pg, [row])
        except asyncpg.PostgresError as error:
            results.append(error)
    return results


async def _record_rows(pg: PgConnection, rows: Sequence[InboxRow]) -> list[Recorded]:
    """Store one merchant's `rows` in one statement (committed when it returns, outside a
    transaction); for each, in order, how it stands. Of a webhook id given twice, the first is
    the delivery."""
    merchant_id = rows[0].merchant_id
    if any(row.merchant_id != merchant_id for row in rows):
        raise ValueError("one merchant's rows at a time")
    inserted = {
        r["webhook_id"]: r["status"]
        for r in await pg.fetch(
            RECORD,
            merchant_id,
            [r.webhook_id for r in rows],
            [r.event_type for r in rows],
            [r.payload for r in rows],
            ["ignored" if r.ignored else "pending" for r in rows],
        )
    }
    replays = [r.webhook_id for r in rows if r.webhook_id not in inserted]
    existing = (
        {r["webhook_id"]: r["status"] for r in await pg.fetch(EXISTING, merchant_id, replays)}
        if replays
        else {}
    )
    results = []
    for row in rows:
        if row.webhook_id in inserted:
            results.append(Recorded(row.webhook_id, inserted.pop(row.webhook_id), replayed=False))
            existing[row.webhook_id] = results[-1].status
        else:
            results.append(Recorded(row.webhook_id, existing[row.webhook_id], replayed=True))
    return results
