"""A points lottery with a committed seed, in the caller's transaction, every point on the
ledger.

Rules this module enforces:
- A draw is provably fair. `open_draw` picks a secret 32-byte seed and publishes its SHA-256
  (returned, and sent as `lottery.opened`) before anyone can enter; `run_draw` publishes the
  seed itself, and `pick_winners` is a pure function of the seed, the numbered tickets and the
  prizes, so anyone can check the seed against the hash and recompute the winners
  (`verify_draw`, with the tickets from `draw_tickets`). The commitment proves the seed was not
  chosen after seeing the entries; it cannot stop someone who knows the seed (the merchant's
  database) from entering with that knowledge.
- A draw's terms (cost, close, prizes) are copied from the program when it opens, so a later
  program version cannot change a draw already announced.
- Entries close at `entries_close_at` and once the draw has run, whichever is first. An entry
  holds the draw's row `FOR SHARE` and `run_draw` takes it `FOR UPDATE`, so the draw waits for
  entries in flight and no entry can slip in after the tickets are counted.
- Entering spends points like a redemption (available → reserved → redeemed in one
  transaction); `InsufficientPoints` from the ledger refuses it. Tickets are numbered 1..N at
  the draw, in the order the entries were posted (ledger entry id).
- One prize per member at most; prizes are paid as available earns, keyed
  `lottery:<draw>:<prize index>`, so running a draw again pays nothing twice and returns the
  stored result.
- Lock order, to avoid deadlocks with the rest of the program: a draw's row before member
  accounts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import ChanceUnavailable, InvalidAmount, SeedMismatch
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.program.chance.prizes import (
    SEED_BYTES,
    Reason,
    find_chance,
    key_reused,
    pay_prizes,
)
from pointguard.program.document.versions import program_in_force
from pointguard.program.keyed_rows import from_row, row_by_key
from pointguard.program.outbox import write_entry_events, write_events
from pointguard.program.wording import ordinal

MAX_ENTRIES_PER_CALL = 1000
ENTRY_HOLD_TIMEOUT_S = 60  # the hold is captured in the same transaction; this never runs out

Ticket = tuple[int, str]  # (ticket number, member id)

# `winners::text`: decoded here, whatever JSON codec the connection has.
DRAW_COLUMNS = """draw_id, name, entry_cost_points, entries_close_at, prizes_points, seed,
    seed_hash, opened_at, drawn_at, ticket_count, tickets_sha256, winners::text AS winners"""

SELECT_DRAW = f"""
SELECT {DRAW_COLUMNS} FROM program_lottery_draws WHERE merchant_id = $1 AND draw_id = $2
"""
LOCK_DRAW_FOR_ENTRY = SELECT_DRAW + " FOR SHARE"
LOCK_DRAW_FOR_RUN = SELECT_DRAW + " FOR UPDATE"

INSERT_DRAW = f"""
INSERT INTO program_lottery_draws (merchant_id, draw_id, name, entry_cost_points,
    entries_close_at, prizes_points, seed, seed_hash, opened_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (merchant_id, draw_id) DO NOTHING
RETURNING {DRAW_COLUMNS}
"""

UPDATE_DRAW_RESULT = f"""
UPDATE program_lottery_draws
SET drawn_at = $3, ticket_count = $4, tickets_sha256 = $5, winners = $6::jsonb
WHERE merchant_id = $1 AND draw_id = $2
RETURNING {DRAW_COLUMNS}
"""

SELECT_ENTRY = """
SELECT entry_id, draw_id, idempotency_key, member_id, entries, points, created_at
FROM program_lottery_entries
"""
SELECT_DRAW_ENTRY_BY_KEY = SELECT_ENTRY + "WHERE merchant_id = $1 AND idempotency_key = $2"
SELECT_DRAW_ENTRY_BY_ID = SELECT_ENTRY + "WHERE merchant_id = $1 AND entry_id = $2"


class NewDraw(NamedTuple):
    """`INSERT_DRAW`'s parameters, in `$n` order."""

    merchant_id: str
    draw_id: str
    name: str
    entry_cost_points: int
    entries_close_at: datetime
    prizes_points: list[int]
    seed: bytes
    seed_hash: bytes
    opened_at: datetime


class DrawOutcome(NamedTuple):
    """`UPDATE_DRAW_RESULT`'s parameters, in `$n` order."""

    merchant_id: str
    draw_id: str
    drawn_at: datetime
    ticket_count: int
    tickets_sha256: bytes
    winners: str  # JSON


class NewEntry(NamedTuple):
    """`INSERT_ENTRY`'s parameters, in `$n` order."""

    merchant_id: str
    entry_id: int
    draw_id: str
    idempotency_key: str
    member_id: str
    entries: int
    points: int
    created_at: datetime


INSERT_ENTRY = """
INSERT INTO program_lottery_entries (merchant_id, entry_id, draw_id, idempotency_key, member_id,
    entries, points, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

SELECT_DRAW_ENTRIES = """
SELECT member_id, entries FROM program_lottery_entries
WHERE merchant_id = $1 AND draw_id = $2 ORDER BY entry_id
"""


@dataclass(frozen=True)
class OpenedDraw:
    """A draw open for entries; `seed_hash` (hex SHA-256 of the secret seed) is public."""

    draw_id: str
    name: str
    entry_cost_points: int
    entries_close_at: datetime
    prizes_points: tuple[int, ...]
    seed_hash: str
    opened_at: datetime


@dataclass(frozen=True)
class DrawEntry:
    """Points spent on `entries` tickets; `entry_id` is the ledger reserve entry's id."""

    entry_id: int
    draw_id: str
    member_id: str
    entries: int
    points: int
    created_at: datetime


@dataclass(frozen=True)
class Winner:
    prize_index: int  # 0 is the first prize
    member_id: str
    points: int
    ledger_entry_id: int


@dataclass(frozen=True)
class DrawResult:
    """A run draw: the revealed `seed` and everything needed to recompute its winners."""

    draw_id: str
    seed: str  # hex
    seed_hash: str  # hex, as published when the draw opened
    ticket_count: int
    tickets_sha256: str  # hex, see `tickets_digest`
    prizes_points: tuple[int, ...]
    winners: tuple[Winner, ...]
    drawn_at: datetime


# --- pure core -----------------------------------------------------------------------------


def seed_hash(seed: bytes) -> bytes:
    """The commitment published before entries close."""
    return hashlib.sha256(seed).digest()


def number_tickets(entries: Iterable[tuple[str, int]]) -> list[Ticket]:
    """Tickets 1..N for `(member id, entries)` in posting order: each entry's tickets in a row."""
    tickets: list[Ticket] = []
    for member_id, count in entries:
        first = len(tickets) + 1
        tickets.extend((first + i, member_id) for i in range(count))
    return tickets


def tickets_digest(tickets: Sequence[Ticket]) -> bytes:
    """SHA-256 of the tickets as compact JSON, `[[1,"ann"],[2,"bob"],...]`, by ticket number:
    published with the draw so a copy of the ticket list can be checked before recomputing."""
    return hashlib.sha256(msgspec.json.encode(sorted(tickets))).digest()


def pick_winners(
    seed: bytes, tickets: Sequence[Ticket], prizes: Sequence[int]
) -> list[tuple[str, int]]:
    """The winners of a draw as `(member id, prize points)`, first prize first.

    The rule, simple enough to redo by hand: put the tickets in ticket-number order. For prize
    index i (0, 1, ...), take h = the SHA-256 of the seed's bytes followed by i as 4 bytes
    big-endian, read h as a 256-bit big-endian integer, and the prize goes to the ticket at
    position h mod n (0-based) among the n tickets still in play. A winner's other tickets then
    leave play: one prize per member at most. When no ticket is left, the remaining prizes are
    not awarded. (The bias of a 256-bit number mod n is below 2^-200 for any real n.)
    """
    numbers = [number for number, _ in tickets]
    if len(set(numbers)) != len(numbers):
        raise ValueError("ticket numbers must be unique")
    pool = sorted(tickets)
    winners: list[tuple[str, int]] = []
    for index, prize_points in enumerate(prizes):
        if not pool:
            break
        digest = hashlib.sha256(seed + index.to_bytes(4, "big")).digest()
        _, member_id = pool[int.from_bytes(digest, "big") % len(pool)]
        winners.append((member_id, prize_points))
        pool = [ticket for ticket in pool if ticket[1] != member_id]
    return winners


def verify_draw(
    seed_hex: str, seed_hash_hex: str, tickets: Sequence[Ticket], prizes: Sequence[int]
) -> list[tuple[str, int]]:
    """Recompute a draw's winners from its revealed seed, after checking that the seed is the
    one committed to: anyone can run this with what the draw published."""
    try:
        seed = bytes.fromhex(seed_hex)
    except ValueError as error:
        raise SeedMismatch(f"the revealed seed is not hex: {error}") from error
    if not hmac.compare_digest(seed_hash(seed).hex(), seed_hash_hex.lower()):
        raise SeedMismatch(
            f"sha256 of the revealed seed is {seed_hash(seed).hex()},"
            f" the draw published {seed_hash_hex}"
        )
    return pick_winners(seed, tickets, prizes)


# --- on the database -----------------------------------------------------------------------


async def open_draw(pg: PgConnection, merchant_id: str, draw_id: str, now: datetime) -> OpenedDraw:
    """Open the program's lottery `draw_id`: commit to a fresh secret seed and publish its hash.
    Opening an open draw returns it unchanged (the seed is never replaced)."""
    row = await pg.fetchrow(SELECT_DRAW, merchant_id, draw_id)
    if row is not None:
        return _opened(row)
    program = (await program_in_force(pg, merchant_id, now)).program
    terms = find_chance(program.chance.lotteries, draw_id, "lottery")
    if now >= terms.entries_close_at:
        raise ChanceUnavailable(
            f"draw {draw_id!r} closed its entries at {terms.entries_close_at}",
            chance_id=draw_id,
            reason=Reason.CLOSED,
        )
    seed = secrets.token_bytes(SEED_BYTES)
    new_draw = NewDraw(
        merchant_id=merchant_id,
        draw_id=draw_id,
        name=terms.name,
        entry_cost_points=terms.entry_cost_points,
        entries_close_at=terms.entries_close_at,
        prizes_points=terms.prizes_points,
        seed=seed,
        seed_hash=seed_hash(seed),
        opened_at=now,
    )
    row = await pg.fetchrow(INSERT_DRAW, *new_draw)
    if row is None:  # opened by a racing call, whose seed stands
        return _opened(await pg.fetchrow(SELECT_DRAW, merchant_id, draw_id))
    opened = _opened(row)
    await write_events(pg, merchant_id, [("lottery.opened", {**asdict(opened), "at": now})])
    return opened


async def enter_draw(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    draw_id: str,
    entries: int,
    *,
    key: str,
    now: datetime,
) -> DrawEntry:
    """Spend `entries` times the entry cost on tickets in an open draw. A repeated `key` returns
    the first entry and spends nothing more."""
    if not 0 < entries <= MAX_ENTRIES_PER_CALL:
        raise InvalidAmount(f"entries must be 1..{MAX_ENTRIES_PER_CALL}, got {entries}")
    earlier = await _entry_by_key(pg, merchant_id, member_id, draw_id, key)
    if earlier is not None:
        return earlier
    draw = await pg.fetchrow(LOCK_DRAW_FOR_ENTRY, merchant_id, draw_id)
    if draw is None:
        raise _not_open(draw_id)
    # A racing repeat of this key may have committed while we waited for the draw.
    earlier = await _entry_by_key(pg, merchant_id, member_id, draw_id, key)
    if earlier is not None:
        return earlier
    if draw["drawn_at"] is not None or now >= draw["entries_close_at"]:
        raise ChanceUnavailable(
            f"draw {draw_id!r} closed its entries at {draw['entries_close_at']}",
            chance_id=draw_id,
            reason=Reason.CLOSED,
        )
    points = entries * draw["entry_cost_points"]
    description = f"{entries} {'entry' if entries == 1 else 'entries'} in {draw['name']}"
    hold = await ops.reserve(
        pg,
        merchant_id,
        member_id,
        points,
        key=idempotency_key("lottery-entry", draw_id, key),
        description=description,
        source=f"program.lottery:{draw_id}",
        now=now,
        timeout_s=ENTRY_HOLD_TIMEOUT_S,
    )
    await ops.capture(pg, merchant_id, hold.entry_id, description=f"Entered: {description}")
    if not hold.replayed:
        entry = NewEntry(
            merchant_id=merchant_id,
            entry_id=hold.entry_id,
            draw_id=draw_id,
            idempotency_key=key,
            member_id=member_id,
            entries=entries,
            points=points,
            created_at=now,
        )
        await pg.execute(INSERT_ENTRY, *entry)
    row = await pg.fetchrow(SELECT_DRAW_ENTRY_BY_ID, merchant_id, hold.entry_id)
    if row is None:  # the ledger key was used outside lottery entries
        raise key_reused(draw_id, key)
    return from_row(DrawEntry, row)


async def run_draw(pg: PgConnection, merchant_id: str, draw_id: str, now: datetime) -> DrawResult:
    """Draw the winners once entries have closed, pay the prizes and reveal the seed. Running
    it again returns the stored result and pays nothing."""
    draw = await pg.fetchrow(LOCK_DRAW_FOR_RUN, merchant_id, draw_id)
    if draw is None:
        raise _not_open(draw_id)
    if draw["drawn_at"] is not None:
        return _result(draw)
    if now < draw["entries_close_at"]:
        raise ChanceUnavailable(
            f"draw {draw_id!r} takes entries until {draw['entries_close_at']}: it cannot run yet",
            chance_id=draw_id,
            reason=Reason.NOT_CLOSED,
        )
    tickets = await draw_tickets(pg, merchant_id, draw_id)
    picked = pick_winners(bytes(draw["seed"]), tickets, draw["prizes_points"])
    program = (await program_in_force(pg, merchant_id, now)).program
    prizes = [
        (
            member_id,
            points,
            idempotency_key("lottery-prize", draw_id, index),
            f"{points} points: {ordinal(index + 1)} prize in {draw['name']}",
        )
        for index, (member_id, points) in enumerate(picked)
    ]
    posted = await pay_prizes(pg, program, merchant_id, f"program.lottery:{draw_id}", now, prizes)
    winners = [
        {"prize_index": i, "member_id": m, "points": p, "ledger_entry_id": e.entry_id}
        for i, ((m, p), e) in enumerate(zip(picked, posted, strict=True))
    ]
    outcome = DrawOutcome(
        merchant_id=merchant_id,
        draw_id=draw_id,
        drawn_at=now,
        ticket_count=len(tickets),
        tickets_sha256=tickets_digest(tickets),
        winners=msgspec.json.encode(winners).decode(),
    )
    row = await pg.fetchrow(UPDATE_DRAW_RESULT, *outcome)
    result = _result(row)
    await write_events(pg, merchant_id, [("lottery.drawn", {**asdict(result), "at": now})])
    await write_entry_events(pg, merchant_id, posted)
    return result


async def draw_tickets(pg: PgConnection, merchant_id: str, draw_id: str) -> list[Ticket]:
    """The draw's tickets, numbered as `run_draw` numbers them: what `verify_draw` needs."""
    rows = await pg.fetch(SELECT_DRAW_ENTRIES, merchant_id, draw_id)
    return number_tickets((r["member_id"], r["entries"]) for r in rows)


# --- helpers -------------------------------------------------------------------------------


async def _entry_by_key(
    pg: PgConnection, merchant_id: str, member_id: str, draw_id: str, key: str
) -> DrawEntry | None:
    row = await row_by_key(
        pg, SELECT_DRAW_ENTRY_BY_KEY, merchant_id, key, member_id, "draw_id", draw_id, key_reused
    )
    return None if row is None else from_row(DrawEntry, row)


def _not_open(draw_id: str) -> ChanceUnavailable:
    return ChanceUnavailable(
        f"draw {draw_id!r} has not been opened", chance_id=draw_id, reason=Reason.NOT_OPEN
    )


def _opened(row: Any) -> OpenedDraw:
    return OpenedDraw(
        draw_id=row["draw_id"],
        name=row["name"],
        entry_cost_points=row["entry_cost_points"],
        entries_close_at=row["entries_close_at"],
        prizes_points=tuple(row["prizes_points"]),
        seed_hash=bytes(row["seed_hash"]).hex(),
        opened_at=row["opened_at"],
    )


def _result(row: Any) -> DrawResult:
    winners = msgspec.json.decode(row["winners"])
    return DrawResult(
        draw_id=row["draw_id"],
        seed=bytes(row["seed"]).hex(),
        seed_hash=bytes(row["seed_hash"]).hex(),
        ticket_count=row["ticket_count"],
        tickets_sha256=bytes(row["tickets_sha256"]).hex(),
        prizes_points=tuple(row["prizes_points"]),
        winners=tuple(
            Winner(w["prize_index"], w["member_id"], w["points"], w["ledger_entry_id"])
            for w in winners
        ),
        drawn_at=row["drawn_at"],
    )
