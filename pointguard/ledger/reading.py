"""Reading entries back: by idempotency key, by id, and as a member's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from pointguard.db import PgConnection
from pointguard.ledger.accounts import SYSTEM_KIND_BY_ID, AccountKind, AccountRef
from pointguard.ledger.entries import EntryKind, PostedEntry, Posting

MAX_HISTORY_PAGE = 200

SELECT_ENTRIES = """
SELECT entry_id, idempotency_key, kind, description, source, metadata::text AS metadata,
       reverses, settles, created_at
FROM ledger_entries
"""

SELECT_POSTINGS_OF_ENTRIES = """
SELECT p.entry_id, p.account_id, p.amount_points, a.member_id, a.kind
FROM ledger_postings p
LEFT JOIN ledger_accounts a ON a.merchant_id = p.merchant_id AND a.account_id = p.account_id
WHERE p.merchant_id = $1 AND p.entry_id = ANY($2::bigint[])
ORDER BY p.entry_id, p.account_id
"""

SELECT_MEMBER_ENTRY_IDS = """
SELECT DISTINCT entry_id FROM ledger_postings
WHERE merchant_id = $1 AND account_id > 0
  AND account_id IN (
      SELECT account_id FROM ledger_accounts WHERE merchant_id = $1 AND member_id = $2)
  AND ($3::bigint IS NULL OR entry_id < $3)
ORDER BY entry_id DESC
LIMIT $4
"""


# Accounts only come with entries, so the entries' merchants are all of them. A recursive
# skip over the primary key costs one index probe per merchant, not a scan of every entry.
SELECT_LEDGER_MERCHANTS = """
WITH RECURSIVE m AS (
    (SELECT merchant_id FROM ledger_entries ORDER BY merchant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.merchant_id FROM ledger_entries e WHERE e.merchant_id > m.merchant_id
            ORDER BY e.merchant_id LIMIT 1)
    FROM m WHERE m.merchant_id IS NOT NULL
)
SELECT merchant_id FROM m WHERE merchant_id IS NOT NULL
"""


SELECT_LOT_STATES = """
SELECT lot_id, pending_points, release_at, release_held FROM ledger_lots
WHERE merchant_id = $1 AND lot_id = ANY($2::bigint[])
"""


@dataclass(frozen=True)
class LotState:
    """Where an earn's points are: still pending (until `release_at`, or held for a fraud
    review: `held`), or all released or taken back (`pending_points` 0)."""

    pending_points: int
    release_at: datetime | None
    held: bool


@dataclass(frozen=True)
class HistoryPage:
    entries: list[PostedEntry]
    next_cursor: int | None  # pass as `before` for the next (older) page; None at the end


async def ledger_merchants(pg: PgConnection) -> list[str]:
    """Every merchant the ledger has seen."""
    return [r["merchant_id"] for r in await pg.fetch(SELECT_LEDGER_MERCHANTS)]


async def load_entries_by_key(
    pg: PgConnection, merchant_id: str, keys: Sequence[str]
) -> dict[str, PostedEntry]:
    rows = await pg.fetch(
        SELECT_ENTRIES + "WHERE merchant_id = $1 AND idempotency_key = ANY($2::text[])",
        merchant_id,
        list(keys),
    )
    entries = await _with_postings(pg, merchant_id, rows, replayed=True)
    return {e.idempotency_key: e for e in entries}


async def load_entry(pg: PgConnection, merchant_id: str, entry_id: int) -> PostedEntry | None:
    rows = await pg.fetch(
        SELECT_ENTRIES + "WHERE merchant_id = $1 AND entry_id = $2", merchant_id, entry_id
    )
    entries = await _with_postings(pg, merchant_id, rows)
    return entries[0] if entries else None


async def member_history(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    *,
    limit: int = 50,
    before: int | None = None,
) -> HistoryPage:
    """A member's entries, newest first, `limit` at a time (cursor pagination on entry id)."""
    limit = max(1, min(limit, MAX_HISTORY_PAGE))
    ids = [
        r["entry_id"]
        for r in await pg.fetch(SELECT_MEMBER_ENTRY_IDS, merchant_id, member_id, before, limit + 1)
    ]
    rows = await pg.fetch(
        SELECT_ENTRIES + "WHERE merchant_id = $1 AND entry_id = ANY($2::bigint[])"
        " ORDER BY entry_id DESC",
        merchant_id,
        ids[:limit],
    )
    entries = await _with_postings(pg, merchant_id, rows)
    return HistoryPage(entries, entries[-1].entry_id if len(ids) > limit else None)


async def lot_states(
    pg: PgConnection, merchant_id: str, earn_ids: Sequence[int]
) -> dict[int, LotState]:
    """The lot of each earn in `earn_ids` (an earn's lot has the earn's entry id)."""
    rows = await pg.fetch(SELECT_LOT_STATES, merchant_id, list(earn_ids))
    return {
        r["lot_id"]: LotState(r["pending_points"], r["release_at"], r["release_held"]) for r in rows
    }


async def _with_postings(
    pg: PgConnection, merchant_id: str, rows: Sequence[Any], *, replayed: bool = False
) -> list[PostedEntry]:
    postings: dict[int, list[Posting]] = {}
    for p in await pg.fetch(SELECT_POSTINGS_OF_ENTRIES, merchant_id, [r["entry_id"] for r in rows]):
        postings.setdefault(p["entry_id"], []).append(
            Posting(_account(merchant_id, p), p["amount_points"])
        )
    return [
        PostedEntry(
            entry_id=r["entry_id"],
            merchant_id=merchant_id,
            idempotency_key=r["idempotency_key"],
            kind=EntryKind(r["kind"]),
            description=r["description"],
            source=r["source"],
            metadata=msgspec.json.decode(r["metadata"]),
            reverses=r["reverses"],
            settles=r["settles"],
            created_at=r["created_at"],
            postings=tuple(postings.get(r["entry_id"], ())),
            replayed=replayed,
        )
        for r in rows
    ]


def _account(merchant_id: str, row: Any) -> AccountRef:
    if row["account_id"] < 0:
        return AccountRef(merchant_id, SYSTEM_KIND_BY_ID[row["account_id"]])
    return AccountRef(merchant_id, AccountKind(row["kind"]), row["member_id"])
