"""The ledger's use cases, each a function of an open transaction (`pg`).

Callers compose them inside their own transaction (the webhook worker posts earns and writes
its outbox together) or run one alone with `pointguard.db.in_transaction`. Operations that act
on an earlier entry first lock the member's accounts and then read that entry's lot or hold, so
what they read cannot change before they post.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pointguard.db import PgConnection
from pointguard.errors import (
    InsufficientPoints,
    InvalidAmount,
    InvalidReference,
    ReservationLapsed,
)
from pointguard.ledger.accounts import (
    MEMBER_KINDS,
    AccountKind,
    AccountRef,
    member_account,
    system_account,
)
from pointguard.ledger.balances import member_balances
from pointguard.ledger.entries import SHAPES, EntryKind, NewEntry, PostedEntry, Posting
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.posting import post_entries
from pointguard.ledger.reading import load_entries_by_key

MAX_JOB_BATCH = 500
MAX_HOLD_TIMEOUT_S = 7 * 24 * 3600
# A checkout paid just as its reservation times out must still be able to spend it: the
# upkeep voids a hold only this long after its timeout, so a capture within the grace always
# finds its hold open. A later capture of a voided hold reserves the points again if they are
# there, else raises `ReservationLapsed` (see `capture`).
CAPTURE_GRACE_S = 600

LOCK_LEDGER_MEMBERS = """
SELECT account_id FROM ledger_accounts
WHERE merchant_id = $1 AND member_id = ANY($2::text[])
ORDER BY member_id, kind
FOR UPDATE
"""

SELECT_LOT = """
SELECT l.member_id, l.pending_points, l.available_points, l.release_at, e.description
FROM ledger_lots l
JOIN ledger_entries e ON e.merchant_id = l.merchant_id AND e.entry_id = l.lot_id
WHERE l.merchant_id = $1 AND l.lot_id = $2
"""

SELECT_HOLD = """
SELECT member_id, amount_points, status, expires_at FROM ledger_holds
WHERE merchant_id = $1 AND hold_id = $2
"""

# A voided hold that a late capture spent after all (through a reservation of its own): the
# hold reads captured, so what it reserved (a redemption) reads paid, and counts as such.
MARK_CAPTURED_LATE = """
UPDATE ledger_holds SET status = 'captured', closed_by = $3
WHERE merchant_id = $1 AND hold_id = $2 AND status = 'voided'
"""

SELECT_DUE_RELEASES = """
SELECT l.lot_id, l.member_id, l.pending_points, e.description
FROM ledger_lots l
JOIN ledger_entries e ON e.merchant_id = l.merchant_id AND e.entry_id = l.lot_id
WHERE l.merchant_id = $1 AND l.pending_points > 0 AND l.release_at <= $2 AND NOT l.release_held
ORDER BY l.release_at, l.lot_id LIMIT $3
"""

# Due probes: the conditions of the upkeep's one statement that finds the merchants with work
# due (`pointguard/upkeep.py`), one beside each job it runs, on that statement's row `upkeep`
# (`merchant_id`, `now`). Each is an index probe that stops at the first row it finds.
HAS_DUE_RELEASES = """EXISTS (
    SELECT 1 FROM ledger_lots l
    WHERE l.merchant_id = upkeep.merchant_id AND l.pending_points > 0
      AND l.release_at <= upkeep.now AND NOT l.release_held)"""

# `last_entry_id`, the newest entry on the member's `available`, versions the state an expiry
# acts on: it keys the expiry entry, so a retry replays and a later change expires anew.
SELECT_NEWEST_AVAILABLE_ENTRY = """
SELECT max(p.entry_id) FROM ledger_postings p
WHERE p.merchant_id = $1 AND p.account_id > 0 AND p.account_id = (
    SELECT account_id FROM ledger_accounts
    WHERE merchant_id = $1 AND member_id = {member} AND kind = 'available')
"""

SELECT_DUE_EXPIRIES = f"""
SELECT l.member_id, sum(l.available_points)::bigint AS points,
       ({SELECT_NEWEST_AVAILABLE_ENTRY.format(member="l.member_id")}) AS last_entry_id
FROM ledger_lots l
WHERE l.merchant_id = $1 AND l.available_points > 0 AND l.expires_at <= $2
  AND l.member_id = ANY($3::text[])
GROUP BY l.member_id ORDER BY l.member_id
"""

SELECT_EXPIRED_MEMBERS = """
SELECT DISTINCT member_id FROM ledger_lots
WHERE merchant_id = $1 AND available_points > 0 AND expires_at <= $2
ORDER BY member_id LIMIT $3
"""

HAS_DUE_EXPIRIES = """EXISTS (
    SELECT 1 FROM ledger_lots l
    WHERE l.merchant_id = upkeep.merchant_id AND l.available_points > 0
      AND l.expires_at <= upkeep.now)"""

SELECT_TIMED_OUT_HOLDS = """
SELECT hold_id, member_id FROM ledger_holds
WHERE merchant_id = $1 AND status = 'open' AND expires_at <= $2
ORDER BY expires_at, hold_id LIMIT $3
"""

HAS_TIMED_OUT_HOLDS = f"""EXISTS (
    SELECT 1 FROM ledger_holds h
    WHERE h.merchant_id = upkeep.merchant_id AND h.status = 'open'
      AND h.expires_at <= upkeep.now - interval '{CAPTURE_GRACE_S} seconds')"""

SET_RELEASE_HELD = """
UPDATE ledger_lots SET release_held = $3 WHERE merchant_id = $1 AND lot_id = $2 RETURNING lot_id
"""


def movement(
    kind: EntryKind,
    merchant_id: str,
    member_id: str,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
    to: AccountKind | None = None,
    **links: Any,
) -> NewEntry:
    """An entry of `kind` moving `points` along the kind's shape (`entries.SHAPES`): from its
    one debit account to its one credit account, or to `to` where the kind allows several.
    `links` are the entry's other fields (`reverses`, `settles`, `release_at`, ...)."""
    shape = SHAPES[kind]
    (source_kind,) = shape.debits
    (target_kind,) = [to] if to is not None else shape.credits

    def ref(account_kind: AccountKind) -> AccountRef:
        if account_kind in MEMBER_KINDS:
            return member_account(merchant_id, member_id, account_kind)
        return system_account(merchant_id, account_kind)

    return NewEntry(
        merchant_id=merchant_id,
        idempotency_key=key,
        kind=kind,
        description=description,
        source=source,
        postings=[Posting(ref(source_kind), -points), Posting(ref(target_kind), points)],
        **links,
    )


def earn_entry(
    merchant_id: str,
    member_id: str,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
    release_at: datetime | None = None,
    expires_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> NewEntry:
    """Points issued to a member: pending until `release_at` if given, else available now."""
    return movement(
        EntryKind.EARN,
        merchant_id,
        member_id,
        points,
        key=key,
        description=description,
        source=source,
        to=AccountKind.PENDING if release_at is not None else AccountKind.AVAILABLE,
        release_at=release_at,
        lot_expires_at=expires_at,
        metadata=metadata or {},
    )


async def earn(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
    release_at: datetime | None = None,
    expires_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> PostedEntry:
    """Post one `earn_entry(...)`."""
    entry = earn_entry(
        merchant_id,
        member_id,
        points,
        key=key,
        description=description,
        source=source,
        release_at=release_at,
        expires_at=expires_at,
        metadata=metadata,
    )
    return (await post_entries(pg, [entry]))[0]


async def lock_members(pg: PgConnection, merchant_id: str, member_ids: Sequence[str]) -> None:
    await pg.fetch(LOCK_LEDGER_MEMBERS, merchant_id, sorted(set(member_ids)))


async def _locked_lot(pg: PgConnection, merchant_id: str, earn_entry_id: int) -> Any:
    return await _locked_row(
        pg,
        SELECT_LOT,
        merchant_id,
        earn_entry_id,
        f"entry {earn_entry_id} of merchant {merchant_id!r} earned no points",
    )


async def _locked_row(
    pg: PgConnection, query: str, merchant_id: str, row_id: int, missing: str
) -> Any:
    """A member's lot or hold, read again after locking the member's accounts, so that it
    cannot change under the caller; `InvalidReference(missing)` if there is none."""
    row = await pg.fetchrow(query, merchant_id, row_id)
    if row is None:
        raise InvalidReference(missing)
    await lock_members(pg, merchant_id, [row["member_id"]])
    return await pg.fetchrow(query, merchant_id, row_id)


def _release_entry(merchant_id: str, earn_entry_id: int, lot: Any) -> NewEntry:
    return movement(
        EntryKind.RELEASE,
        merchant_id,
        lot["member_id"],
        lot["pending_points"],
        key=idempotency_key(EntryKind.RELEASE, earn_entry_id),
        description=_release_description(lot["pending_points"], lot["description"]),
        source="ledger.release",
        settles=earn_entry_id,
    )


def _release_description(pending_points: int, earned: str) -> str:
    """The customer's words for a release: the earn's own words when all of it is released,
    else the points that are, since a partial refund already took some back."""
    if earned.startswith(f"{pending_points} "):
        return f"Now available: {earned}"
    return f"Now available: {pending_points} points ({earned}, less returns)"


async def release(pg: PgConnection, merchant_id: str, earn_entry_id: int) -> PostedEntry:
    """Move an earn's pending points to available (the return window and fraud check passed)."""
    lot = await _locked_lot(pg, merchant_id, earn_entry_id)
    if lot["pending_points"] == 0:
        key = idempotency_key(EntryKind.RELEASE, earn_entry_id)
        earlier = (await load_entries_by_key(pg, merchant_id, [key])).get(key)
        if earlier is not None:
            return earlier
        raise InvalidReference(f"entry {earn_entry_id} has no pending points to release")
    return (await post_entries(pg, [_release_entry(merchant_id, earn_entry_id, lot)]))[0]


async def set_release_held(
    pg: PgConnection, merchant_id: str, earn_entry_id: int, *, held: bool
) -> None:
    """Hold (or let go) an earn's release; the fraud guard holds what it flags."""
    if await pg.fetchval(SET_RELEASE_HELD, merchant_id, earn_entry_id, held) is None:
        raise InvalidReference(
            f"entry {earn_entry_id} of merchant {merchant_id!r} earned no points"
        )


async def take_back(
    pg: PgConnection,
    merchant_id: str,
    earn_entry_id: int,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
) -> list[PostedEntry]:
    """Take back points of an earn (a refund): its pending points first, then a clawback of
    the rest from available, which may leave the member visibly negative. A retry with the
    same key returns what the first call posted, whatever has happened to the earn since."""
    if points <= 0:
        raise InvalidAmount(f"points to take back must be positive, got {points}")
    lot = await _locked_lot(pg, merchant_id, earn_entry_id)
    return await _take_back_from(
        pg, merchant_id, earn_entry_id, lot, points, key=key, description=description, source=source
    )


async def _take_back_from(
    pg: PgConnection,
    merchant_id: str,
    earn_entry_id: int,
    lot: Any,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
) -> list[PostedEntry]:
    """`take_back` once the earn's lot is read under its member's lock."""
    kinds = (EntryKind.REVERSAL, EntryKind.CLAWBACK)
    keys = [idempotency_key(kind, key) for kind in kinds]
    earlier = await load_entries_by_key(pg, merchant_id, keys)
    if earlier:
        return [earlier[k] for k in keys if k in earlier]
    from_pending = min(points, lot["pending_points"])
    parts = zip(kinds, keys, (from_pending, points - from_pending), strict=True)
    entries = [
        movement(
            kind,
            merchant_id,
            lot["member_id"],
            amount,
            key=part_key,
            description=description,
            source=source,
            reverses=earn_entry_id,
        )
        for kind, part_key, amount in parts
        if amount
    ]
    return await post_entries(pg, entries)


async def take_back_what_is_left(
    pg: PgConnection,
    merchant_id: str,
    earn_entry_id: int,
    *,
    key: str,
    description: str,
    source: str,
) -> list[PostedEntry]:
    """Take back whatever an earn still holds, pending or available (points already spent are
    gone: nothing is clawed back beyond the earn's own lot); nothing if it holds none."""
    lot = await _locked_lot(pg, merchant_id, earn_entry_id)
    left = lot["pending_points"] + lot["available_points"]
    if left <= 0:
        return []
    return await _take_back_from(
        pg, merchant_id, earn_entry_id, lot, left, key=key, description=description, source=source
    )


async def forfeit(
    pg: PgConnection, merchant_id: str, earn_entry_id: int, *, description: str, source: str
) -> PostedEntry:
    """Forfeit an earn's pending points (fraud confirmed by a reviewer)."""
    entry = await forfeit_pending(
        pg, merchant_id, earn_entry_id, description=description, source=source
    )
    if entry is None:
        raise InvalidReference(f"entry {earn_entry_id} has no pending points to forfeit")
    return entry


async def forfeit_pending(
    pg: PgConnection, merchant_id: str, earn_entry_id: int, *, description: str, source: str
) -> PostedEntry | None:
    """Forfeit whatever an earn still has pending; None if nothing is (refunds took it all)."""
    lot = await _locked_lot(pg, merchant_id, earn_entry_id)
    if lot["pending_points"] == 0:
        return None
    entry = movement(
        EntryKind.FORFEIT,
        merchant_id,
        lot["member_id"],
        lot["pending_points"],
        key=idempotency_key(EntryKind.FORFEIT, earn_entry_id),
        description=description,
        source=source,
        reverses=earn_entry_id,
    )
    return (await post_entries(pg, [entry]))[0]


async def let_go(
    pg: PgConnection, merchant_id: str, earn_entry_id: int, *, now: datetime
) -> PostedEntry | None:
    """Stop holding an earn's release (a reviewer cleared it) and release its pending points
    at once if they are due by `now`; the upkeep releases the rest when they fall due."""
    lot = await _locked_lot(pg, merchant_id, earn_entry_id)  # the member's lock first
    await set_release_held(pg, merchant_id, earn_entry_id, held=False)
    if lot["pending_points"] == 0 or lot["release_at"] is None or lot["release_at"] > now:
        return None
    return (await post_entries(pg, [_release_entry(merchant_id, earn_entry_id, lot)]))[0]


async def reserve(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    points: int,
    *,
    key: str,
    description: str,
    source: str,
    now: datetime,
    timeout_s: int,
) -> PostedEntry:
    """Hold points for a checkout (available → reserved) until captured, voided or timed out.
    The returned entry's id is the hold id."""
    if not 0 < timeout_s <= MAX_HOLD_TIMEOUT_S:
        raise InvalidAmount(f"timeout_s must be 1..{MAX_HOLD_TIMEOUT_S}, got {timeout_s}")
    entry = movement(
        EntryKind.RESERVE,
        merchant_id,
        member_id,
        points,
        key=key,
        description=description,
        source=source,
        hold_expires_at=now + timedelta(seconds=timeout_s),
    )
    return (await post_entries(pg, [entry]))[0]


async def _close_hold(
    pg: PgConnection, merchant_id: str, hold_ids: Sequence[int], kind: EntryKind, description: str
) -> list[PostedEntry]:
    entries = []
    for hold_id in hold_ids:
        hold = await pg.fetchrow(SELECT_HOLD, merchant_id, hold_id)
        if hold is None:
            raise InvalidReference(_no_hold(merchant_id, hold_id))
        entries.append(_closing_entry(kind, merchant_id, hold_id, hold, description))
    return await post_entries(pg, entries)


def _closing_entry(
    kind: EntryKind,
    merchant_id: str,
    hold_id: int,
    hold: Any,
    description: str,
    *,
    settles: int | None = None,
) -> NewEntry:
    """The capture or void that closes hold `hold_id`; a capture settles the reservation
    (`settles`: the one a late capture made again), a void reverses it."""
    link: dict[str, Any] = (
        {"settles": settles or hold_id} if kind == EntryKind.CAPTURE else {"reverses": hold_id}
    )
    return movement(
        kind,
        merchant_id,
        hold["member_id"],
        hold["amount_points"],
        key=idempotency_key(kind, hold_id),
        description=description,
        source=f"ledger.{kind.value}",
        **link,
    )


def _no_hold(merchant_id: str, hold_id: int) -> str:
    return f"no reservation {hold_id} for merchant {merchant_id!r}"


async def capture(
    pg: PgConnection, merchant_id: str, hold_id: int, *, description: str
) -> PostedEntry:
    """Spend a reservation (reserved → redeemed): the order was paid.

    Within `CAPTURE_GRACE_S` of its timeout the hold is still open (the upkeep waits that
    long). A hold voided since (cancelled, or timed out past the grace) is reserved again and
    spent, when the member's available points cover it; else `ReservationLapsed`, and nothing
    changes: the storefront must not let the checkout go through as paid in points."""
    hold = await _locked_row(pg, SELECT_HOLD, merchant_id, hold_id, _no_hold(merchant_id, hold_id))
    if hold["status"] != "voided":
        closing = _closing_entry(EntryKind.CAPTURE, merchant_id, hold_id, hold, description)
        return (await post_entries(pg, [closing]))[0]
    again = movement(
        EntryKind.RESERVE,
        merchant_id,
        hold["member_id"],
        hold["amount_points"],
        key=idempotency_key("re-reserve", hold_id),
        description=f"Reserved again: {description}",
        source="ledger.capture",
        hold_expires_at=hold["expires_at"],
        metadata={"replaces_hold": hold_id},
    )
    try:
        async with pg.transaction():  # the reservation and its capture, or neither
            new_hold = (await post_entries(pg, [again]))[0]
            entry = _closing_entry(
                EntryKind.CAPTURE,
                merchant_id,
                hold_id,
                hold,
                description,
                settles=new_hold.entry_id,
            )
            captured = (await post_entries(pg, [entry]))[0]
            await pg.execute(MARK_CAPTURED_LATE, merchant_id, hold_id, captured.entry_id)
    except InsufficientPoints as short:
        raise ReservationLapsed(
            f"reservation {hold_id} was voided and member {hold['member_id']!r} has"
            f" {short.available_points} points available, the capture needs"
            f" {hold['amount_points']}",
            hold_id=hold_id,
            member_id=hold["member_id"],
            available_points=short.available_points,
        ) from short
    return captured


async def void(
    pg: PgConnection, merchant_id: str, hold_id: int, *, description: str
) -> PostedEntry:
    """Cancel a reservation (reserved → available), its points back in the lots they left."""
    return (await _close_hold(pg, merchant_id, [hold_id], EntryKind.VOID, description))[0]


async def void_timed_out(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Void reservations past their timeout and the capture grace; returns how many. Run it
    periodically."""
    cutoff = now - timedelta(seconds=CAPTURE_GRACE_S)
    holds = await pg.fetch(SELECT_TIMED_OUT_HOLDS, merchant_id, cutoff, MAX_JOB_BATCH)
    if not holds:
        return 0
    await lock_members(pg, merchant_id, [h["member_id"] for h in holds])
    still_open = [
        h["hold_id"]
        for h in await pg.fetch(SELECT_TIMED_OUT_HOLDS, merchant_id, cutoff, MAX_JOB_BATCH)
    ]
    if still_open:
        await _close_hold(pg, merchant_id, still_open, EntryKind.VOID, "Reservation timed out")
    return len(still_open)


async def release_due(pg: PgConnection, merchant_id: str, *, now: datetime) -> list[PostedEntry]:
    """Release pending earns whose `release_at` has passed and that no one holds; returns the
    release entries posted."""
    due = await pg.fetch(SELECT_DUE_RELEASES, merchant_id, now, MAX_JOB_BATCH)
    if not due:
        return []
    await lock_members(pg, merchant_id, [d["member_id"] for d in due])
    entries = [
        _release_entry(merchant_id, lot["lot_id"], lot)
        for lot in await pg.fetch(SELECT_DUE_RELEASES, merchant_id, now, MAX_JOB_BATCH)
    ]
    return await post_entries(pg, entries) if entries else []


async def expire_member(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    *,
    key: str,
    description: str,
    source: str,
) -> PostedEntry | None:
    """Expire all of a member's available points (inactivity expiry); None if there are none.

    `key` names the request; the entry's key adds the member's newest entry on `available`
    (as `expire_due` does), so a retry replays and points credited since (a release) expire
    anew instead of meeting the first expiry's key with another amount."""
    await lock_members(pg, merchant_id, [member_id])
    available = (await member_balances(pg, merchant_id, member_id)).available_points
    if available <= 0:
        return None
    newest = await pg.fetchval(
        SELECT_NEWEST_AVAILABLE_ENTRY.format(member="$2"), merchant_id, member_id
    )
    entry = movement(
        EntryKind.EXPIRE,
        merchant_id,
        member_id,
        available,
        key=idempotency_key("expire-member", key, newest),
        description=description,
        source=source,
    )
    return (await post_entries(pg, [entry]))[0]


async def expire_due(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Post what is left of lots past their expiry to `expired`; returns points expired."""
    members = [
        r["member_id"]
        for r in await pg.fetch(SELECT_EXPIRED_MEMBERS, merchant_id, now, MAX_JOB_BATCH)
    ]
    if not members:
        return 0
    await lock_members(pg, merchant_id, members)
    rows = await pg.fetch(SELECT_DUE_EXPIRIES, merchant_id, now, members)
    entries = [
        movement(
            EntryKind.EXPIRE,
            merchant_id,
            r["member_id"],
            r["points"],
            key=idempotency_key("expire-lots", r["member_id"], r["last_entry_id"]),
            description=f"{r['points']} points expired",
            source="ledger.expiry",
        )
        for r in rows
    ]
    posted = await post_entries(pg, entries) if entries else []
    return sum(
        p.amount_points for e in posted if not e.replayed for p in e.postings if p.amount_points > 0
    )
