"""Posting: a batch of entries applied in one transaction, exactly once each.

The order of work is what makes it safe:
1. insert the entries with `ON CONFLICT DO NOTHING` on (merchant, idempotency key): a key seen
   before (even one racing us) yields no row, and that entry is returned as first posted if
   the repeat is the same entry (kind, accounts, amounts), else `IdempotencyConflict`;
2. lock the member accounts the new entries touch, in (member, kind) order (no deadlocks), walk
   the entries in order to check that no balance goes below zero (only a clawback may take
   `available` negative) and that nothing is taken from an account that does not exist;
3. in one statement, add the deltas to the locked accounts, create the missing ones (a race to
   create one just adds to it) and insert the postings;
4. apply lots and holds (`effects.py`).
Any error rolls the whole batch back: a batch is fully present or absent. Batches of plain earns
take a one-statement path (`earning.py`) that does all of this at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    InvalidReference,
    UnknownAccount,
)
from pointguard.ledger.accounts import SYSTEM_ACCOUNT_IDS, AccountKind
from pointguard.ledger.earning import is_plain_earn, post_plain_earns
from pointguard.ledger.effects import apply_effects
from pointguard.ledger.entries import EntryKind, NewEntry, PostedEntry, Posting, validate_batch
from pointguard.ledger.reading import load_entries_by_key

INSERT_ENTRIES = """
INSERT INTO ledger_entries
    (merchant_id, idempotency_key, kind, description, source, metadata, reverses, settles)
SELECT $1, k, kind, d, s, m::jsonb, r, st
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
    WITH ORDINALITY AS t(k, kind, d, s, m, r, st, n)
ORDER BY n
ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
RETURNING idempotency_key, entry_id, created_at
"""

LOCK_MEMBER_ACCOUNTS = """
SELECT member_id, kind, balance_points FROM ledger_accounts
WHERE merchant_id = $1
  AND (member_id, kind) IN (SELECT * FROM unnest($2::text[], $3::text[]))
ORDER BY member_id, kind
FOR UPDATE
"""

WRITE_BALANCES_AND_POSTINGS = """
WITH updated AS (
    UPDATE ledger_accounts a SET balance_points = a.balance_points + d.delta
    FROM unnest($2::text[], $3::text[], $4::bigint[]) AS d(member_id, kind, delta)
    WHERE a.merchant_id = $1 AND a.member_id = d.member_id AND a.kind = d.kind
    RETURNING a.account_id, a.member_id, a.kind
), created AS (
    INSERT INTO ledger_accounts AS a (merchant_id, member_id, kind, balance_points)
    SELECT $1, * FROM unnest($5::text[], $6::text[], $7::bigint[])
    ON CONFLICT (merchant_id, member_id, kind)
    DO UPDATE SET balance_points = a.balance_points + EXCLUDED.balance_points
    RETURNING account_id, member_id, kind
), acc AS (
    SELECT * FROM updated UNION ALL SELECT * FROM created
)
INSERT INTO ledger_postings (merchant_id, entry_id, account_id, amount_points)
SELECT $1, p.entry_id, COALESCE(acc.account_id, p.system_account_id), p.amount
FROM unnest($8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])
    AS p(entry_id, member_id, kind, system_account_id, amount)
LEFT JOIN acc ON acc.member_id = p.member_id AND acc.kind = p.kind
"""

BalanceKey = tuple[str, str]  # (member_id, account kind)


class NewEntries(NamedTuple):
    """What `INSERT_ENTRIES` takes, in `$1..$8` order: a column per field of the entries."""

    merchant_id: str
    idempotency_keys: list[str]
    kinds: list[str]
    descriptions: list[str]
    sources: list[str]
    metadata: list[str]  # JSON text
    reverses: list[int | None]
    settles: list[int | None]


class BalancesAndPostings(NamedTuple):
    """What `WRITE_BALANCES_AND_POSTINGS` takes, in `$1..$12` order: the deltas of the accounts
    that exist (locked), the balances of those to create, and the postings, a column per
    field of each."""

    merchant_id: str
    updated_member_ids: list[str]
    updated_kinds: list[str]
    updated_deltas: list[int]
    created_member_ids: list[str]
    created_kinds: list[str]
    created_balances: list[int]
    posting_entry_ids: list[int]
    posting_member_ids: list[str]
    posting_kinds: list[str]
    posting_system_account_ids: list[int | None]  # None for a member's account
    posting_amounts: list[int]


async def post_entries(pg: PgConnection, entries: Sequence[NewEntry]) -> list[PostedEntry]:
    """Post `entries` atomically and return them in order, inside the caller's transaction if
    there is one. On error nothing of the batch remains, even if the caller goes on.

    A repeated idempotency key returns the entry first posted under it (`replayed=True`) and
    changes nothing when the repeat is the same entry (kind, accounts and amounts); a different
    entry under a used key raises `IdempotencyConflict`, and nothing of the batch remains.
    """
    validate_batch(entries)
    merchant_id = entries[0].merchant_id
    if all(is_plain_earn(e) for e in entries):
        # One statement and no savepoint (its round trips are what ingest pays for): a conflict
        # found after it is undone with the caller's transaction, in which every caller posts.
        inserted = await post_plain_earns(
            pg, merchant_id, entries, SYSTEM_ACCOUNT_IDS[AccountKind.ISSUED]
        )
        replayed = await _replayed(pg, merchant_id, entries, inserted)
    else:
        # A transaction of its own, or a savepoint inside the caller's: a caller that catches
        # our error and commits must not commit half a batch.
        async with pg.transaction():
            inserted = await _post_general(pg, merchant_id, entries)
            replayed = await _replayed(pg, merchant_id, entries, inserted)
    return [
        _posted(e, inserted[e.idempotency_key])
        if e.idempotency_key in inserted
        else replayed[e.idempotency_key]
        for e in entries
    ]


async def _replayed(
    pg: PgConnection, merchant_id: str, entries: Sequence[NewEntry], inserted: dict[str, Any]
) -> dict[str, PostedEntry]:
    """The entries first posted under the keys of `entries` not inserted now, each checked to
    be the same entry as its repeat."""
    keys = [e.idempotency_key for e in entries if e.idempotency_key not in inserted]
    if not keys:
        return {}
    replayed = await load_entries_by_key(pg, merchant_id, keys)
    for entry in entries:
        if entry.idempotency_key in replayed:
            _check_same_entry(entry, replayed[entry.idempotency_key])
    return replayed


async def _post_general(
    pg: PgConnection, merchant_id: str, entries: Sequence[NewEntry]
) -> dict[str, Any]:
    new_entries = NewEntries(
        merchant_id=merchant_id,
        idempotency_keys=[e.idempotency_key for e in entries],
        kinds=[e.kind.value for e in entries],
        descriptions=[e.description for e in entries],
        sources=[e.source for e in entries],
        metadata=[msgspec.json.encode(dict(e.metadata)).decode() for e in entries],
        reverses=[e.reverses for e in entries],
        settles=[e.settles for e in entries],
    )
    inserted = {row["idempotency_key"]: row for row in await pg.fetch(INSERT_ENTRIES, *new_entries)}
    fresh = [
        (inserted[e.idempotency_key]["entry_id"], e)
        for e in entries
        if e.idempotency_key in inserted
    ]
    if fresh:
        debts = await _write_balances(pg, merchant_id, fresh)
        await apply_effects(pg, merchant_id, fresh, debts)
    return inserted


async def _write_balances(
    pg: PgConnection, merchant_id: str, fresh: list[tuple[int, NewEntry]]
) -> list[int]:
    """Lock, check and update member balances, and insert the postings.

    Returns, per entry, the member's `available` debt (points below zero) just before it, which
    the lots logic settles first out of anything the entry credits to `available`.
    """
    keys = sorted(
        {
            (e.member_id, p.account.kind.value)
            for _, e in fresh
            for p in e.postings
            if p.account.is_member
        }
    )
    rows = await pg.fetch(
        LOCK_MEMBER_ACCOUNTS, merchant_id, [k[0] for k in keys], [k[1] for k in keys]
    )
    start: dict[BalanceKey, int] = {(r["member_id"], r["kind"]): r["balance_points"] for r in rows}
    balance = dict(start)
    debts = [_apply_in_memory(entry, balance) for _, entry in fresh]

    postings = [(entry_id, p) for entry_id, e in fresh for p in e.postings]
    existing = [k for k in keys if k in start]
    created = [k for k in keys if k not in start]
    writes = BalancesAndPostings(
        merchant_id=merchant_id,
        updated_member_ids=[member_id for member_id, _ in existing],
        updated_kinds=[kind for _, kind in existing],
        updated_deltas=[balance[k] - start[k] for k in existing],
        created_member_ids=[member_id for member_id, _ in created],
        created_kinds=[kind for _, kind in created],
        created_balances=[balance[k] for k in created],
        posting_entry_ids=[entry_id for entry_id, _ in postings],
        posting_member_ids=[p.account.member_id for _, p in postings],
        posting_kinds=[p.account.kind.value for _, p in postings],
        posting_system_account_ids=[SYSTEM_ACCOUNT_IDS.get(p.account.kind) for _, p in postings],
        posting_amounts=[p.amount_points for _, p in postings],
    )
    await pg.execute(WRITE_BALANCES_AND_POSTINGS, *writes)
    return debts


def _apply_in_memory(entry: NewEntry, balance: dict[BalanceKey, int]) -> int:
    """Apply one entry's member postings to `balance`, refusing overdrafts; return the debt
    (`available` below zero) the member had before it."""
    member = entry.member_id
    debt = max(0, -balance.get((member, AccountKind.AVAILABLE.value), 0))
    for posting in entry.postings:
        if not posting.account.is_member:
            continue
        key = (member, posting.account.kind.value)
        # A spend from an `available` never opened is a member with no points yet, which is
        # no fault of the request; any other take from a missing account names a wrong one.
        spends = key[1] == AccountKind.AVAILABLE and entry.kind != EntryKind.CLAWBACK
        if posting.amount_points < 0 and key not in balance and not spends:
            raise UnknownAccount(
                f"entry {entry.idempotency_key!r}: member {member!r} has no {key[1]} account"
                " to take points from"
            )
        new_balance = balance.get(key, 0) + posting.amount_points
        # Only a take can overdraw; a credit that leaves a debt smaller is always welcome.
        if posting.amount_points < 0 and new_balance < 0 and entry.kind != EntryKind.CLAWBACK:
            held = balance.get(key, 0)
            if key[1] == AccountKind.AVAILABLE:
                raise InsufficientPoints(
                    f"member {member!r} has {held} points available,"
                    f" needs {-posting.amount_points}",
                    member_id=member,
                    available_points=held,
                )
            raise InvalidReference(
                f"entry {entry.idempotency_key!r}: member {member!r} has {held} {key[1]} points,"
                f" the entry takes {-posting.amount_points}"
            )
        balance[key] = new_balance
    return debt


def _check_same_entry(entry: NewEntry, first: PostedEntry) -> None:
    """A repeat is the first entry again only if it moves the same points the same way; words
    (description, source, metadata) may differ between a request and its retry."""
    if (entry.kind, _movements(entry.postings)) != (first.kind, _movements(first.postings)):
        raise IdempotencyConflict(
            f"idempotency key {entry.idempotency_key!r} already names entry {first.entry_id}"
            f" ({first.kind}, {_movements(first.postings)}), not this {entry.kind} entry"
            f" ({_movements(entry.postings)})",
            idempotency_key=entry.idempotency_key,
        )


def _movements(postings: Sequence[Posting]) -> list[tuple[str, str, int]]:
    return sorted((p.account.kind.value, p.account.member_id, p.amount_points) for p in postings)


def _posted(entry: NewEntry, row: Any) -> PostedEntry:
    return PostedEntry(
        entry_id=row["entry_id"],
        merchant_id=entry.merchant_id,
        idempotency_key=entry.idempotency_key,
        kind=entry.kind,
        description=entry.description,
        source=entry.source,
        metadata=dict(entry.metadata),
        reverses=entry.reverses,
        settles=entry.settles,
        created_at=row["created_at"],
        postings=tuple(entry.postings),
    )
