"""Lots and holds: what each entry kind does beyond moving balances.

Invariants kept here (and checked by `verify.py`), per member:
- the pending points of their lots add up to their `pending` balance;
- the available points of their lots add up to their `available` balance, or to zero while a
  clawback has left `available` negative (later credits settle that debt first);
- the open holds add up to their `reserved` balance.
Spends and expiry consume lots earliest-expiring first; a void puts the points back into the
lots they came from, so a reservation cannot extend the life of expiring points.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.errors import InvalidReference
from pointguard.ledger.accounts import AccountKind
from pointguard.ledger.entries import EntryKind, NewEntry

INSERT_LOTS = """
INSERT INTO ledger_lots
    (merchant_id, lot_id, member_id, pending_points, available_points, release_at, expires_at)
SELECT $1, * FROM unnest(
    $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])
"""

MOVE_PENDING_POINTS = """
UPDATE ledger_lots
SET pending_points = pending_points - $4, available_points = available_points + $5
WHERE merchant_id = $1 AND lot_id = $2 AND member_id = $3 AND pending_points >= $4
RETURNING lot_id
"""

TAKE_FROM_LOTS = """
WITH ranked AS (
    SELECT lot_id, available_points,
           sum(available_points) OVER (ORDER BY expires_at NULLS LAST, lot_id)
               - available_points AS before
    FROM ledger_lots
    WHERE merchant_id = $1 AND member_id = $2 AND available_points > 0
), taken AS (
    SELECT lot_id, LEAST(available_points, $3 - before) AS points FROM ranked WHERE before < $3
)
UPDATE ledger_lots l SET available_points = l.available_points - taken.points
FROM taken WHERE l.merchant_id = $1 AND l.lot_id = taken.lot_id
RETURNING l.lot_id, taken.points
"""

INSERT_HOLD = """
WITH hold AS (
    INSERT INTO ledger_holds (merchant_id, hold_id, member_id, amount_points, expires_at)
    VALUES ($1, $2, $3, $4, $5)
)
INSERT INTO ledger_hold_lots (merchant_id, hold_id, lot_id, points)
SELECT $1, $2, * FROM unnest($6::bigint[], $7::bigint[])
"""

MARK_HOLD_CLOSED = """
UPDATE ledger_holds SET status = $5, closed_by = $6
WHERE merchant_id = $1 AND hold_id = $2 AND member_id = $3 AND amount_points = $4
  AND status = 'open'
RETURNING hold_id
"""

SELECT_HOLD_LOTS = """
SELECT h.lot_id, h.points FROM ledger_hold_lots h
JOIN ledger_lots l ON l.merchant_id = h.merchant_id AND l.lot_id = h.lot_id
WHERE h.merchant_id = $1 AND h.hold_id = $2
ORDER BY l.expires_at NULLS LAST, l.lot_id
"""

ADD_BACK_TO_LOTS = """
UPDATE ledger_lots l SET available_points = l.available_points + r.points
FROM unnest($2::bigint[], $3::bigint[]) AS r(lot_id, points)
WHERE l.merchant_id = $1 AND l.lot_id = r.lot_id
"""


class Lot(NamedTuple):
    """A new lot: an earn's points, pending or available."""

    lot_id: int
    member_id: str
    pending_points: int
    available_points: int
    release_at: datetime | None
    expires_at: datetime | None


class NewLots(NamedTuple):
    """What `INSERT_LOTS` takes, in `$1..$7` order: a column per field of the lots."""

    merchant_id: str
    lot_ids: list[int]
    member_ids: list[str]
    pending_points: list[int]
    available_points: list[int]
    release_ats: list[datetime | None]
    expires_ats: list[datetime | None]


class NewHold(NamedTuple):
    """What `INSERT_HOLD` takes, in `$1..$7` order: the hold and the points it took from each
    lot."""

    merchant_id: str
    hold_id: int
    member_id: str
    amount_points: int
    expires_at: datetime | None
    lot_ids: list[int]
    lot_points: list[int]


class HoldClosing(NamedTuple):
    """What `MARK_HOLD_CLOSED` takes, in `$1..$6` order: the open hold it must find, and how
    it closes."""

    merchant_id: str
    hold_id: int | None
    member_id: str
    amount_points: int
    status: str  # captured or voided
    closed_by: int  # the capture or void entry


Handler = Callable[[PgConnection, str, int, NewEntry, int], Awaitable[None]]


async def apply_effects(
    pg: PgConnection, merchant_id: str, fresh: list[tuple[int, NewEntry]], debts: list[int]
) -> None:
    """Apply lot and hold effects in entry order. New lots from consecutive earns go in one
    statement; they are written before any later entry that could consume them."""
    new_lots: list[Lot] = []
    for (entry_id, entry), debt in zip(fresh, debts, strict=True):
        if entry.kind == EntryKind.EARN:
            new_lots.append(_new_lot(entry_id, entry, debt))
            continue
        await _flush_lots(pg, merchant_id, new_lots)
        new_lots = []
        await HANDLERS[entry.kind](pg, merchant_id, entry_id, entry, debt)
    await _flush_lots(pg, merchant_id, new_lots)


def _new_lot(entry_id: int, entry: NewEntry, debt: int) -> Lot:
    return Lot(
        lot_id=entry_id,
        member_id=entry.member_id,
        pending_points=entry.member_delta(AccountKind.PENDING),
        available_points=max(0, entry.member_delta(AccountKind.AVAILABLE) - debt),
        release_at=entry.release_at,
        expires_at=entry.lot_expires_at,
    )


async def _flush_lots(pg: PgConnection, merchant_id: str, lots: list[Lot]) -> None:
    if lots:
        new_lots = NewLots(
            merchant_id=merchant_id,
            lot_ids=[lot.lot_id for lot in lots],
            member_ids=[lot.member_id for lot in lots],
            pending_points=[lot.pending_points for lot in lots],
            available_points=[lot.available_points for lot in lots],
            release_ats=[lot.release_at for lot in lots],
            expires_ats=[lot.expires_at for lot in lots],
        )
        await pg.execute(INSERT_LOTS, *new_lots)


async def _move_pending(
    pg: PgConnection, merchant_id: str, entry_id: int, entry: NewEntry, debt: int
) -> None:
    """Release (pending → available, settling debt first) or reverse/forfeit pending points."""
    points = -entry.member_delta(AccountKind.PENDING)
    to_available = max(0, points - debt) if entry.kind == EntryKind.RELEASE else 0
    lot = await pg.fetchval(
        MOVE_PENDING_POINTS, merchant_id, entry.target, entry.member_id, points, to_available
    )
    if lot is None:
        raise InvalidReference(
            f"entry {entry.idempotency_key!r}: entry {entry.target} holds no {points} pending"
            f" points of member {entry.member_id!r}"
        )


async def consume_lots(
    pg: PgConnection, merchant_id: str, member_id: str, points: int
) -> list[tuple[int, int]]:
    """Take up to `points` from the member's lots, earliest-expiring first."""
    rows = await pg.fetch(TAKE_FROM_LOTS, merchant_id, member_id, points)
    return [(row["lot_id"], row["points"]) for row in rows]


async def _take_available(
    pg: PgConnection, merchant_id: str, entry_id: int, entry: NewEntry, debt: int
) -> None:
    """Clawback and expiry: take from lots; a clawback may find less than it takes."""
    await consume_lots(pg, merchant_id, entry.member_id, -entry.member_delta(AccountKind.AVAILABLE))


async def _open_hold(
    pg: PgConnection, merchant_id: str, entry_id: int, entry: NewEntry, debt: int
) -> None:
    points = entry.member_delta(AccountKind.RESERVED)
    taken = await consume_lots(pg, merchant_id, entry.member_id, points)
    hold = NewHold(
        merchant_id=merchant_id,
        hold_id=entry_id,
        member_id=entry.member_id,
        amount_points=points,
        expires_at=entry.hold_expires_at,
        lot_ids=[lot for lot, _ in taken],
        lot_points=[p for _, p in taken],
    )
    await pg.execute(INSERT_HOLD, *hold)


async def _close_hold(
    pg: PgConnection, merchant_id: str, entry_id: int, entry: NewEntry, debt: int
) -> None:
    """Capture or void a whole reservation; a void puts its points back into their lots."""
    points = -entry.member_delta(AccountKind.RESERVED)
    status = "captured" if entry.kind == EntryKind.CAPTURE else "voided"
    closing = HoldClosing(
        merchant_id=merchant_id,
        hold_id=entry.target,
        member_id=entry.member_id,
        amount_points=points,
        status=status,
        closed_by=entry_id,
    )
    closed = await pg.fetchval(MARK_HOLD_CLOSED, *closing)
    if closed is None:
        raise InvalidReference(
            f"entry {entry.idempotency_key!r}: no open reservation {entry.target} of {points}"
            f" points for member {entry.member_id!r}"
        )
    if entry.kind == EntryKind.VOID:
        await _restore_lots(pg, merchant_id, entry.target, debt)


async def _restore_lots(pg: PgConnection, merchant_id: str, hold_id: int | None, debt: int) -> None:
    lots: list[int] = []
    points: list[int] = []
    for row in await pg.fetch(SELECT_HOLD_LOTS, merchant_id, hold_id):
        settled = min(debt, row["points"])
        debt -= settled
        if row["points"] > settled:
            lots.append(row["lot_id"])
            points.append(row["points"] - settled)
    if lots:
        await pg.execute(ADD_BACK_TO_LOTS, merchant_id, lots, points)


HANDLERS: dict[EntryKind, Handler] = {
    EntryKind.RELEASE: _move_pending,
    EntryKind.REVERSAL: _move_pending,
    EntryKind.FORFEIT: _move_pending,
    EntryKind.CLAWBACK: _take_available,
    EntryKind.EXPIRE: _take_available,
    EntryKind.RESERVE: _open_hold,
    EntryKind.CAPTURE: _close_hold,
    EntryKind.VOID: _close_hold,
}
