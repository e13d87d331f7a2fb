"""The fast path for earns: a whole batch of plain earns in ONE statement.

Earns only add points, so they need no overdraft check and cannot name a missing account; all
the posting steps (entries with idempotency, account upserts, postings, lots) fit in one
statement of data-modifying CTEs. One statement is one round trip, and on its own it is one
transaction: on this kind of machine a round trip costs more client CPU than the rest of the
work, so this is what lets ingest keep pace with PostgreSQL.

The account upsert locks rows in (member, kind) order, the same order `posting.py` uses.
A credit to a member whose `available` is negative settles that debt before it fills a lot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.ledger.entries import EntryKind, NewEntry

POST_EARNS = """
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bigint[], $9::timestamptz[], $10::timestamptz[])
        WITH ORDINALITY AS i(idempotency_key, description, source, metadata, member_id, kind,
                             points, release_at, expires_at, n)
), inserted AS (
    INSERT INTO ledger_entries (merchant_id, idempotency_key, kind, description, source, metadata)
    SELECT $1, idempotency_key, 'earn', description, source, metadata::jsonb FROM input ORDER BY n
    ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
    RETURNING entry_id, idempotency_key, created_at
), fresh AS (
    SELECT i.*, e.entry_id FROM input i JOIN inserted e USING (idempotency_key)
), accounts AS (
    INSERT INTO ledger_accounts AS a (merchant_id, member_id, kind, balance_points)
    SELECT $1, member_id, kind, sum(points) FROM fresh GROUP BY member_id, kind
    ORDER BY member_id, kind
    ON CONFLICT (merchant_id, member_id, kind)
    DO UPDATE SET balance_points = a.balance_points + EXCLUDED.balance_points
    RETURNING account_id, member_id, kind, balance_points
), credited AS (
    SELECT f.*, a.account_id,
           a.balance_points - sum(f.points) OVER whole + sum(f.points) OVER so_far AS running
    FROM fresh f JOIN accounts a USING (member_id, kind)
    WINDOW whole AS (PARTITION BY f.member_id, f.kind),
           so_far AS (PARTITION BY f.member_id, f.kind ORDER BY f.n)
), postings AS (
    INSERT INTO ledger_postings (merchant_id, entry_id, account_id, amount_points)
    SELECT $1, entry_id, account_id, points FROM credited
    UNION ALL
    SELECT $1, entry_id, $11, -points FROM credited
), lots AS (
    INSERT INTO ledger_lots
        (merchant_id, lot_id, member_id, pending_points, available_points, release_at, expires_at)
    SELECT $1, entry_id, member_id,
           CASE WHEN kind = 'pending' THEN points ELSE 0 END,
           CASE WHEN kind = 'available' THEN GREATEST(0, LEAST(points, running)) ELSE 0 END,
           release_at, expires_at
    FROM credited
)
SELECT idempotency_key, entry_id, created_at FROM inserted
"""


class PlainEarns(NamedTuple):
    """What `POST_EARNS` takes, in `$1..$11` order: a column per field of the earns."""

    merchant_id: str
    idempotency_keys: list[str]
    descriptions: list[str]
    sources: list[str]
    metadata: list[str]  # JSON text
    member_ids: list[str]
    kinds: list[str]  # the member account credited: pending or available
    points: list[int]
    release_ats: list[datetime | None]
    expires_ats: list[datetime | None]
    issued_account_id: int


def is_plain_earn(entry: NewEntry) -> bool:
    """An earn of two postings: issued → one member account."""
    return entry.kind == EntryKind.EARN and len(entry.postings) == 2


async def post_plain_earns(
    pg: PgConnection, merchant_id: str, entries: Sequence[NewEntry], issued_account_id: int
) -> dict[str, Any]:
    """Post validated plain earns; returns the rows of those not posted before, by key."""
    credits = [next(p for p in e.postings if p.account.is_member) for e in entries]
    earns = PlainEarns(
        merchant_id=merchant_id,
        idempotency_keys=[e.idempotency_key for e in entries],
        descriptions=[e.description for e in entries],
        sources=[e.source for e in entries],
        metadata=[msgspec.json.encode(dict(e.metadata)).decode() for e in entries],
        member_ids=[c.account.member_id for c in credits],
        kinds=[c.account.kind.value for c in credits],
        points=[c.amount_points for c in credits],
        release_ats=[e.release_at for e in entries],
        expires_ats=[e.lot_expires_at for e in entries],
        issued_account_id=issued_account_id,
    )
    rows = await pg.fetch(POST_EARNS, *earns)
    return {row["idempotency_key"]: row for row in rows}
