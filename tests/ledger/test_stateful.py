"""A stateful (hypothesis) test of the ledger against the real PostgreSQL.

`LedgerMachine` drives the ledger operations of `pointguard.ledger.operations` (earn, release,
hold/let go a release, forfeit, refund, reserve, capture, void, the release/timeout/expiry jobs
and the whole upkeep pass, sealing, retries under an earlier idempotency key, references to the
wrong kind of entry) for a few members of one fresh merchant, on a simulated clock that also
jumps exactly onto the next deadline, each operation in its own transaction. Next to the
database it keeps a plain Python model: per member `available`, `pending`, `reserved`; per
lot its pending and available points (lot semantics as in `effects.py`: spends and expiry take
the earliest-expiring lots first, voids put points back into the lots they came from, credits
to a negative `available` settle the debt first); per hold its lots and status; the system
accounts and the number of entries. After every step the database must agree with the model
exactly and satisfy the ledger invariants, checked with SQL; `verify_merchant` runs every few
steps and at the end of every example, after sealing.

Hypothesis state machines are synchronous, so the machine runs each step on a private event
loop with its own engine (not the session's `engine` fixture, whose loop is pytest-asyncio's).

The small tests at the end pin, step by step, the ledger bugs this machine found (since
fixed in `pointguard/`).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    InvalidReference,
    ReservationLapsed,
    UnknownAccount,
)
from pointguard.ledger import (
    AccountKind,
    EntryKind,
    member_balances,
    outstanding_liability,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import maintain_merchant
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

ResultT = TypeVar("ResultT")

START = datetime(2026, 1, 1, tzinfo=UTC)
MEMBERS = ("ann", "bob", "cy")
SOURCE = "test.stateful"
VERIFY_EVERY = 5
NOT_A_REFERENCE = 10**15  # no entry of any merchant has this id
EXPIRES_IN_H = st.none() | st.integers(-48, 60 * 24)  # lot expiry, from the simulated now

# --- invariant queries (one merchant) --------------------------------------------------------

BAD_ENTRIES = """
SELECT e.entry_id, count(p.entry_id) AS postings, coalesce(sum(p.amount_points), 0) AS total
FROM ledger_entries e
LEFT JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
WHERE e.merchant_id = $1 GROUP BY e.entry_id
HAVING count(p.entry_id) < 2 OR coalesce(sum(p.amount_points), 0) <> 0
"""

ENTRY_COUNT = "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1"

ACCOUNTS = """
SELECT a.member_id, a.kind, a.balance_points,
       (SELECT coalesce(sum(p.amount_points), 0)::bigint FROM ledger_postings p
        WHERE p.merchant_id = a.merchant_id AND p.account_id = a.account_id) AS posted
FROM ledger_accounts a WHERE a.merchant_id = $1
"""

SYSTEM_POSTED = """
SELECT coalesce(sum(amount_points), 0)::bigint FROM ledger_postings
WHERE merchant_id = $1 AND account_id < 0
"""

LOTS = """
SELECT lot_id, member_id, pending_points, available_points, release_held
FROM ledger_lots WHERE merchant_id = $1
"""

HOLDS = """
SELECT hold_id, member_id, amount_points, status, expires_at
FROM ledger_holds WHERE merchant_id = $1
"""

HOLD_LOTS = "SELECT hold_id, lot_id, points FROM ledger_hold_lots WHERE merchant_id = $1"


# --- the private event loop ------------------------------------------------------------------


class Runner:
    """An event loop of our own and an engine bound to it, for synchronous callers."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = db.create_engine(database_url, pool_size=2)
        self.run(db.migrate(self.engine))  # idempotent; the session fixture may not have run

    def run(self, coro: Awaitable[ResultT]) -> ResultT:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.run(self.engine.dispose())
        finally:
            self.loop.close()


@pytest.fixture
def runner(database_url: str) -> Iterator[Runner]:
    r = Runner(database_url)
    yield r
    r.close()


# --- the model -------------------------------------------------------------------------------

CAPTURE_GRACE = timedelta(seconds=ops.CAPTURE_GRACE_S)  # the upkeep voids after it


@dataclass
class Lot:
    lot_id: int
    member: str
    points: int
    pending: int
    available: int
    release_at: datetime | None
    expires_at: datetime | None
    held: bool = False
    released: bool = False

    @property
    def spend_order(self) -> tuple[bool, datetime, int]:
        """`ORDER BY expires_at NULLS LAST, lot_id`."""
        return (self.expires_at is None, self.expires_at or START, self.lot_id)


@dataclass
class Hold:
    hold_id: int
    member: str
    amount: int
    expires_at: datetime
    lots: list[tuple[int, int]]
    status: str = "open"
    captured_through: int | None = None  # a late capture's own reservation, once voided


@dataclass
class Member:
    available: int = 0
    pending: int = 0
    reserved: int = 0
    has_available_account: bool = False
    clawed_back: bool = False


@dataclass(frozen=True)
class Request:
    """An earlier request, kept so it can be sent again under the same idempotency key."""

    op: str  # "earn", "reserve" or "take_back"
    key: str
    args: tuple[Any, ...]
    posted: tuple[tuple[str, int, EntryKind], ...]  # (idempotency key, entry id, kind)


class LedgerMachine(RuleBasedStateMachine):
    runner: ClassVar[Runner]

    earns = Bundle("earns")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.merchant = f"sm-{uuid.uuid4().hex[:12]}"
        self.now = START
        self.counter = itertools.count(1)
        self.lots: dict[int, Lot] = {}
        self.hold_model: dict[int, Hold] = {}
        self.members = {m: Member() for m in MEMBERS}
        self.system = {
            AccountKind.ISSUED: 0,
            AccountKind.REDEEMED: 0,
            AccountKind.EXPIRED: 0,
            AccountKind.FORFEITED: 0,
        }
        self.entries = 0
        self.sealed = 0
        self.checks = 0
        self.requests: list[Request] = []

    # -- plumbing --

    def key(self, what: str) -> str:
        return f"{what}-{next(self.counter)}"

    def remember(self, op: str, key: str, args: tuple[Any, ...], posted: list[Any]) -> None:
        entries = tuple((e.idempotency_key, e.entry_id, e.kind) for e in posted)
        self.requests.append(Request(op, key, args, entries))

    def tx(self, op: Callable[..., Awaitable[ResultT]], *args: Any, **kwargs: Any) -> ResultT:
        """`op(pg, merchant, *args, **kwargs)` in its own transaction."""
        return self.runner.run(
            db.in_transaction(self.runner.engine, lambda pg: op(pg, self.merchant, *args, **kwargs))
        )

    def refused(
        self, error: type[Exception], op: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """`op` must fail with `error` (and, in its own transaction, change nothing)."""
        with pytest.raises(error) as info:
            self.tx(op, *args, **kwargs)
        return info.value

    # -- model helpers --

    def _lots_of(self, member: str) -> list[Lot]:
        return sorted(
            (lot for lot in self.lots.values() if lot.member == member and lot.available > 0),
            key=lambda lot: lot.spend_order,
        )

    def _consume(self, member: str, points: int) -> list[tuple[int, int]]:
        """Take up to `points` from the member's lots, earliest-expiring first."""
        taken = []
        for lot in self._lots_of(member):
            if points == 0:
                break
            n = min(lot.available, points)
            lot.available -= n
            points -= n
            taken.append((lot.lot_id, n))
        return taken

    def _credit_available(self, member: str, points: int) -> int:
        """Add to the member's `available`; return the debt settled first (lots get the rest)."""
        m = self.members[member]
        debt = max(0, -m.available)
        m.available += points
        m.has_available_account = True
        return debt

    def _release(self, lot: Lot) -> None:
        points = lot.pending
        self.members[lot.member].pending -= points
        debt = self._credit_available(lot.member, points)
        lot.available += max(0, points - debt)
        lot.pending = 0
        lot.released = True
        self.entries += 1

    def _void(self, hold: Hold) -> None:
        self.members[hold.member].reserved -= hold.amount
        debt = self._credit_available(hold.member, hold.amount)
        for lot_id, points in sorted(hold.lots, key=lambda t: self.lots[t[0]].spend_order):
            settled = min(debt, points)
            debt -= settled
            self.lots[lot_id].available += points - settled
        hold.status = "voided"
        self.entries += 1

    def _void_timed_out(self) -> int:
        due = sorted(
            (
                h
                for h in self.hold_model.values()
                if h.status == "open" and h.expires_at + CAPTURE_GRACE <= self.now
            ),
            key=lambda h: (h.expires_at, h.hold_id),
        )
        for h in due:
            self._void(h)
        return len(due)

    def _release_due(self) -> int:
        due = sorted(
            (
                lot
                for lot in self.lots.values()
                if lot.pending > 0
                and not lot.held
                and lot.release_at is not None
                and lot.release_at <= self.now
            ),
            key=lambda lot: (lot.release_at, lot.lot_id),
        )
        for lot in due:
            self._release(lot)
        return len(due)

    def _expire_due(self) -> int:
        due: dict[str, int] = {}
        for lot in self.lots.values():
            if lot.available > 0 and lot.expires_at is not None and lot.expires_at <= self.now:
                due[lot.member] = due.get(lot.member, 0) + lot.available
                lot.available = 0
        for member, points in due.items():
            self.members[member].available -= points
            self.system[AccountKind.EXPIRED] += points
            self.entries += 1
        return sum(due.values())

    # -- rules: earning --

    @initialize(
        target=earns,
        opening=st.lists(
            st.tuples(st.sampled_from(MEMBERS), st.integers(1, 300), EXPIRES_IN_H),
            min_size=1,
            max_size=len(MEMBERS),
        ),
    )
    def opening_balances(self, opening: list[tuple[str, int, int | None]]) -> Any:
        """Some members start with available points (others have no `available` account)."""
        return multiple(*(self.earn(m, p, False, 0, e) for m, p, e in opening))

    @rule(
        target=earns,
        member=st.sampled_from(MEMBERS),
        points=st.integers(1, 300),
        pending=st.booleans(),
        release_in_h=st.integers(-24, 20 * 24),
        expires_in_h=EXPIRES_IN_H,
    )
    def earn(
        self, member: str, points: int, pending: bool, release_in_h: int, expires_in_h: int | None
    ) -> int:
        release_at = self.now + timedelta(hours=release_in_h) if pending else None
        expires_at = None if expires_in_h is None else self.now + timedelta(hours=expires_in_h)
        key = self.key("earn")
        entry = self.tx(
            ops.earn,
            member,
            points,
            key=key,
            description=f"{points} points",
            source=SOURCE,
            release_at=release_at,
            expires_at=expires_at,
        )
        assert not entry.replayed and entry.kind == EntryKind.EARN
        self.entries += 1
        self.system[AccountKind.ISSUED] -= points
        lot = Lot(entry.entry_id, member, points, 0, 0, release_at, expires_at)
        if pending:
            self.members[member].pending += points
            lot.pending = points
        else:
            lot.available = max(0, points - self._credit_available(member, points))
        self.lots[entry.entry_id] = lot
        self.remember("earn", key, (member, points, release_at), [entry])
        return entry.entry_id

    @rule(earn=earns)
    def release(self, earn: int) -> None:
        lot = self.lots[earn]
        if lot.pending > 0:
            entry = self.tx(ops.release, earn)
            assert not entry.replayed and entry.kind == EntryKind.RELEASE and entry.settles == earn
            self._release(lot)
        elif lot.released:
            entry = self.tx(ops.release, earn)
            assert entry.replayed and entry.kind == EntryKind.RELEASE and entry.settles == earn
        else:
            self.refused(InvalidReference, ops.release, earn)

    @precondition(lambda self: self.lots)
    @rule(held=st.booleans(), data=st.data())
    def set_release_held(self, held: bool, data: st.DataObject) -> None:
        """The fraud guard holds (or lets go) an earn's release, mostly one still pending."""
        pending = [lot.lot_id for lot in self.lots.values() if lot.pending > 0]
        every = st.sampled_from(sorted(self.lots))
        earn = data.draw(st.sampled_from(pending) | every if pending else every, "earn")
        self.tx(ops.set_release_held, earn, held=held)
        self.lots[earn].held = held

    @rule()
    def release_due(self) -> None:
        expected = self._release_due()
        assert len(self.tx(ops.release_due, now=self.now)) == expected

    @rule(earn=earns)
    def forfeit(self, earn: int) -> None:
        lot = self.lots[earn]
        if lot.pending == 0:
            self.refused(InvalidReference, ops.forfeit, earn, description="Fraud", source=SOURCE)
            return
        entry = self.tx(ops.forfeit, earn, description="Fraud", source=SOURCE)
        assert entry.kind == EntryKind.FORFEIT and entry.reverses == earn
        self.members[lot.member].pending -= lot.pending
        self.system[AccountKind.FORFEITED] += lot.pending
        lot.pending = 0
        self.entries += 1

    @rule(earn=earns, data=st.data())
    def take_back(self, earn: int, data: st.DataObject) -> None:
        """A refund of part or all of an earn, now and then more than it (nothing stops that),
        or one that leaves the member a debt that their open holds and other pending points
        could settle (when voided or released)."""
        lot = self.lots[earn]
        m = self.members[lot.member]
        into_debt = st.integers(1, lot.points)
        coming = m.reserved + m.pending - lot.pending
        if coming > 0 and m.available >= 0:
            least = lot.pending + m.available + 1
            into_debt = st.integers(least, least + coming - 1)
        points = data.draw(
            st.integers(1, lot.points) | st.integers(1, 2 * lot.points) | into_debt, "points"
        )
        from_pending = min(points, lot.pending)
        rest = points - from_pending
        key = self.key("refund")
        kwargs = {"key": key, "description": "Refund", "source": SOURCE}
        if rest and not m.has_available_account:
            # A clawback from a member who never had available points: `posting` refuses to
            # take from an account that does not exist (and the whole refund rolls back).
            self.refused(UnknownAccount, ops.take_back, earn, points, **kwargs)
            return
        posted = self.tx(ops.take_back, earn, points, **kwargs)
        kinds = [e.kind for e in posted]
        assert kinds == [EntryKind.REVERSAL] * bool(from_pending) + [EntryKind.CLAWBACK] * bool(
            rest
        )
        assert all(e.reverses == earn and not e.replayed for e in posted)
        self.entries += len(posted)
        self.system[AccountKind.ISSUED] += points
        lot.pending -= from_pending
        m.pending -= from_pending
        if rest:
            m.available -= rest
            m.clawed_back = True
            self._consume(lot.member, rest)
        self.remember("take_back", key, (earn, points), posted)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def retry_a_request(self, data: st.DataObject) -> None:
        """An earlier earn, reservation or refund again, under its idempotency key: the same
        entries (in other words) replay the first and change nothing; an earn or reservation
        with other content under the key is an `IdempotencyConflict` and changes nothing."""
        ops_sent = sorted({r.op for r in self.requests})
        op = data.draw(st.sampled_from(ops_sent), "op")  # refunds as often as the rest
        request = data.draw(st.sampled_from([r for r in self.requests if r.op == op]), "request")
        kw = {"key": request.key, "description": "Retry", "source": SOURCE}
        if request.op != "take_back" and data.draw(st.booleans(), "other_content"):
            if request.op == "earn":
                self.refused(IdempotencyConflict, ops.earn, "someone-else", 999, **kw)
            else:
                other = {"now": self.now, "timeout_s": 60}
                self.refused(IdempotencyConflict, ops.reserve, "someone-else", 1, **other, **kw)
            return
        if request.op == "earn":
            member, points, release_at = request.args
            posted = [self.tx(ops.earn, member, points, release_at=release_at, **kw)]
        elif request.op == "reserve":
            member, points = request.args
            posted = [self.tx(ops.reserve, member, points, now=self.now, timeout_s=60, **kw)]
        else:
            earn, points = request.args
            posted = self.tx(ops.take_back, earn, points, **kw)
        assert posted and all(e.replayed for e in posted)
        first = {key: (entry_id, kind) for key, entry_id, kind in request.posted}
        assert all(first[e.idempotency_key] == (e.entry_id, e.kind) for e in posted)

    # -- rules: spending --

    @rule(target=holds, timeout_h=st.integers(1, 72), data=st.data())
    def reserve(self, timeout_h: int, data: st.DataObject) -> Any:
        """A checkout: mostly by a member with points and for points they have."""
        funded = [name for name, m in self.members.items() if m.available > 0]
        members = st.sampled_from(MEMBERS)
        member = data.draw(st.sampled_from(funded) | members if funded else members, "member")
        m = self.members[member]
        points = data.draw(st.integers(1, max(1, m.available)) | st.integers(1, 400), "points")
        key = self.key("reserve")
        kwargs = {
            "key": key,
            "description": "Checkout",
            "source": SOURCE,
            "now": self.now,
            "timeout_s": timeout_h * 3600,
        }
        if m.available < points:  # also with no `available` account yet: 0 available
            error = self.refused(InsufficientPoints, ops.reserve, member, points, **kwargs)
            assert error.member_id == member and error.available_points == m.available
            return multiple()
        entry = self.tx(ops.reserve, member, points, **kwargs)
        assert not entry.replayed and entry.kind == EntryKind.RESERVE
        self.entries += 1
        m.available -= points
        m.reserved += points
        lots = self._consume(member, points)
        assert sum(p for _, p in lots) == points
        expires_at = self.now + timedelta(hours=timeout_h)
        self.hold_model[entry.entry_id] = Hold(entry.entry_id, member, points, expires_at, lots)
        self.remember("reserve", key, (member, points), [entry])
        return entry.entry_id

    @rule(hold=holds)
    def capture(self, hold: int) -> None:
        h = self.hold_model[hold]
        if h.status == "voided":
            self._capture_late(h)
            return
        entry = self.tx(ops.capture, hold, description="Redeemed")
        assert entry.kind == EntryKind.CAPTURE
        assert entry.settles == (h.captured_through or hold)
        assert entry.replayed == (h.status == "captured")
        if h.status == "open":
            h.status = "captured"
            self.members[h.member].reserved -= h.amount
            self.system[AccountKind.REDEEMED] += h.amount
            self.entries += 1

    def _capture_late(self, h: Hold) -> None:
        """A voided hold captured after all: reserved again from available and spent, or
        `ReservationLapsed` when available no longer covers it."""
        m = self.members[h.member]
        if m.available < h.amount:
            error = self.refused(ReservationLapsed, ops.capture, h.hold_id, description="Redeemed")
            assert error.available_points == m.available
            return
        entry = self.tx(ops.capture, h.hold_id, description="Redeemed")
        assert entry.kind == EntryKind.CAPTURE and not entry.replayed
        assert entry.settles is not None
        m.available -= h.amount
        lots = self._consume(h.member, h.amount)
        again = Hold(entry.settles, h.member, h.amount, h.expires_at, lots, "captured")
        self.hold_model[again.hold_id] = again
        h.status, h.captured_through = "captured", again.hold_id
        self.system[AccountKind.REDEEMED] += h.amount
        self.entries += 2

    @rule(hold=holds)
    def void(self, hold: int) -> None:
        h = self.hold_model[hold]
        if h.status == "captured" and h.captured_through is None:
            self.refused(InvalidReference, ops.void, hold, description="Cancelled")
            return
        entry = self.tx(ops.void, hold, description="Cancelled")
        assert entry.kind == EntryKind.VOID and entry.reverses == hold
        # voided before (a late capture since spent it anew): the first void again, no change
        assert entry.replayed == (h.status != "open")
        if h.status == "open":
            self._void(h)

    @rule()
    def void_timed_out(self) -> None:
        expected = self._void_timed_out()
        assert self.tx(ops.void_timed_out, now=self.now) == expected

    # -- rules: references that do not fit --

    @rule(earn=earns, hold=holds, data=st.data())
    def references_that_do_not_fit(self, earn: int, hold: int, data: st.DataObject) -> None:
        """An earn where a hold belongs, a hold where an earn belongs, an id that is nothing."""
        not_a_hold = data.draw(st.sampled_from([earn, NOT_A_REFERENCE]), "not_a_hold")
        not_an_earn = data.draw(st.sampled_from([hold, NOT_A_REFERENCE]), "not_an_earn")
        self.refused(InvalidReference, ops.capture, not_a_hold, description="x")
        self.refused(InvalidReference, ops.void, not_a_hold, description="x")
        self.refused(InvalidReference, ops.release, not_an_earn)
        self.refused(InvalidReference, ops.forfeit, not_an_earn, description="x", source=SOURCE)
        self.refused(InvalidReference, ops.set_release_held, not_an_earn, held=True)
        self.refused(
            InvalidReference,
            ops.take_back,
            not_an_earn,
            1,
            key=self.key("bad"),
            description="x",
            source=SOURCE,
        )

    # -- rules: time and background jobs --

    def _deadlines(self) -> list[datetime]:
        return sorted(
            t
            for t in itertools.chain(
                (lot.expires_at for lot in self.lots.values() if lot.available > 0),
                (lot.release_at for lot in self.lots.values() if lot.pending > 0),
                (
                    h.expires_at + CAPTURE_GRACE
                    for h in self.hold_model.values()
                    if h.status == "open"
                ),
            )
            if t is not None and t > self.now
        )

    @rule(hours=st.none() | st.integers(1, 10 * 24))
    def advance_clock(self, hours: int | None) -> None:
        """By some hours, or (None) exactly to the next expiry, release time or hold timeout:
        the jobs' boundaries."""
        deadlines = self._deadlines()
        if hours is not None:
            self.now += timedelta(hours=hours)
        elif deadlines:
            self.now = deadlines[0]

    @rule()
    def expire_due(self) -> None:
        """Also run twice at one `now`: the second run expires only what came due since."""
        expected = self._expire_due()
        assert self.tx(ops.expire_due, now=self.now) == expected

    @rule()
    def upkeep(self) -> None:
        """The background pass: timed-out voids, due releases, expiry, then sealing."""
        expected = (self._void_timed_out(), self._release_due(), self._expire_due())
        counts = self.runner.run(maintain_merchant(self.runner.engine, self.merchant, self.now))
        assert (counts.voided, counts.released, counts.expired_points) == expected
        assert counts.sealed == self.entries - self.sealed
        self.sealed = self.entries

    @rule()
    def seal_entries(self) -> None:
        assert self.tx(seal) == self.entries - self.sealed
        self.sealed = self.entries

    # -- checks --

    async def _verify(self) -> None:
        async with db.connection(self.runner.engine) as pg:
            report = await verify_merchant(pg, self.merchant)
        assert report.ok, report.problems
        assert report.entries_sealed == self.sealed

    @invariant()
    def database_agrees_with_model(self) -> None:
        self.runner.run(self._check())
        self.checks += 1
        if self.checks % VERIFY_EVERY == 0:
            self.runner.run(self._verify())

    async def _check(self) -> None:
        merchant = self.merchant
        async with db.connection(self.runner.engine) as pg:
            # Every entry has two or more postings summing to zero; none is missing or extra.
            assert [tuple(r) for r in await pg.fetch(BAD_ENTRIES, merchant)] == []
            assert await pg.fetchval(ENTRY_COUNT, merchant) == self.entries

            # Stored balances equal their postings, and the model's.
            stored: dict[tuple[str, str], int] = {}
            for r in await pg.fetch(ACCOUNTS, merchant):
                assert r["balance_points"] == r["posted"], dict(r)
                stored[(r["member_id"], r["kind"])] = r["balance_points"]
            for name, m in self.members.items():
                got = {
                    k: stored.get((name, k.value))
                    for k in (AccountKind.AVAILABLE, AccountKind.PENDING, AccountKind.RESERVED)
                }
                assert (got[AccountKind.AVAILABLE] is not None) == m.has_available_account, (
                    name,
                    got,
                )
                got = {k: v or 0 for k, v in got.items()}
                assert (
                    got[AccountKind.AVAILABLE],
                    got[AccountKind.PENDING],
                    got[AccountKind.RESERVED],
                ) == (
                    m.available,
                    m.pending,
                    m.reserved,
                ), (name, got, m)
                assert got[AccountKind.PENDING] >= 0 and got[AccountKind.RESERVED] >= 0
                assert got[AccountKind.AVAILABLE] >= 0 or m.clawed_back, (name, got)
                bal = await member_balances(pg, merchant, name)
                assert (bal.available_points, bal.pending_points, bal.reserved_points) == (
                    m.available,
                    m.pending,
                    m.reserved,
                )

            # Liability: members' balances, and minus the system accounts.
            liability = await outstanding_liability(pg, merchant)
            assert liability == sum(stored.values())
            assert liability == sum(
                m.available + m.pending + m.reserved for m in self.members.values()
            )
            system = await system_balances(pg, merchant)
            assert system == self.system, (system, self.system)
            assert sum(system.values()) == -liability
            assert await pg.fetchval(SYSTEM_POSTED, merchant) == -liability

            # Lots, holds and the lots holds took, exactly as modelled.
            lots = {
                r["lot_id"]: (
                    r["member_id"],
                    r["pending_points"],
                    r["available_points"],
                    r["release_held"],
                )
                for r in await pg.fetch(LOTS, merchant)
            }
            assert lots == {
                lot.lot_id: (lot.member, lot.pending, lot.available, lot.held)
                for lot in self.lots.values()
            }
            holds = {
                r["hold_id"]: (r["member_id"], r["amount_points"], r["status"], r["expires_at"])
                for r in await pg.fetch(HOLDS, merchant)
            }
            assert holds == {
                h.hold_id: (h.member, h.amount, h.status, h.expires_at)
                for h in self.hold_model.values()
            }
            hold_lots = sorted(tuple(r) for r in await pg.fetch(HOLD_LOTS, merchant))
            assert hold_lots == sorted(
                (h.hold_id, lot_id, p) for h in self.hold_model.values() for lot_id, p in h.lots
            )

            # Lots back balances (verify's rule; with the equalities above it holds in the
            # database too): available lots = max(0, available), pending lots = pending, open
            # holds = reserved.
            for name, m in self.members.items():
                mine = [lot for lot in self.lots.values() if lot.member == name]
                assert sum(lot.available for lot in mine) == max(0, m.available)
                assert sum(lot.pending for lot in mine) == m.pending
                open_holds = [h for h in self.hold_model.values() if h.member == name]
                assert sum(h.amount for h in open_holds if h.status == "open") == m.reserved

    def teardown(self) -> None:
        if not hasattr(self, "merchant"):
            return
        self.seal_entries()
        self.runner.run(self._verify())


# A plain run explores CI_EXAMPLES programs of up to 50 steps (about 25 s: the whole suite must
# stay under 10 minutes on CI); `-m slow` runs the machine at length, SLOW_EXAMPLES of them.
CI_EXAMPLES = 60
SLOW_EXAMPLES = 1000


def explore(runner: Runner, examples: int) -> None:
    LedgerMachine.runner = runner
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_ledger_state_machine(runner: Runner) -> None:
    explore(runner, CI_EXAMPLES)


@pytest.mark.slow
def test_ledger_state_machine_at_length(runner: Runner, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long state machine runs with -m slow")
    explore(runner, SLOW_EXAMPLES)


# --- regressions: ledger bugs the machine found, step by step ---------------------------------

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


async def balances(run: Any, merchant: str, member: str) -> tuple[int, int, int]:
    b = await run(member_balances, merchant, member)
    return b.available_points, b.pending_points, b.reserved_points


async def earn(
    run: Any,
    merchant: str,
    member: str,
    points: int,
    key: str,
    *,
    pending: bool = False,
    expires_at: datetime | None = None,
) -> int:
    entry = await run(
        ops.earn,
        merchant,
        member,
        points,
        key=key,
        description=f"{points} points",
        source=SOURCE,
        release_at=NOW + timedelta(days=30) if pending else None,
        expires_at=expires_at,
    )
    return entry.entry_id


async def claw_back(run: Any, merchant: str, earn_id: int, points: int, key: str) -> None:
    await run(
        ops.take_back, merchant, earn_id, points, key=key, description="Refund", source=SOURCE
    )


async def assert_verifies(engine: AsyncEngine, merchant: str) -> None:
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems


async def test_reserve_without_available_account_is_insufficient_points(run, merchant):
    """Pending points only: the member has 0 available, which is no fault of the request."""
    await earn(run, merchant, "alice", 100, "o1", pending=True)
    with pytest.raises(InsufficientPoints) as info:
        await run(
            ops.reserve,
            merchant,
            "alice",
            10,
            key="r1",
            description="Checkout",
            source=SOURCE,
            now=NOW,
            timeout_s=600,
        )
    assert info.value.available_points == 0


async def test_release_settles_part_of_a_debt(run, merchant, engine):
    """A release that settles only part of a clawback's debt was refused as an overdraft
    (`posting._apply_in_memory` refused any posting leaving `available` below zero, credits
    included)."""
    e1 = await earn(run, merchant, "alice", 50, "o1")
    e2 = await earn(run, merchant, "alice", 30, "o2", pending=True)
    await claw_back(run, merchant, e1, 100, "refund-1")  # available 50 - 100 = -50
    assert await balances(run, merchant, "alice") == (-50, 30, 0)
    await run(ops.release, merchant, e2)
    assert await balances(run, merchant, "alice") == (-20, 0, 0)
    await assert_verifies(engine, merchant)


async def test_void_settles_part_of_a_debt(run, merchant, engine):
    """Same cause: a void whose points settled only part of the debt was refused, leaving the
    hold open and its points stuck."""
    e1 = await earn(run, merchant, "alice", 100, "o1")
    hold = await run(
        ops.reserve,
        merchant,
        "alice",
        30,
        key="r1",
        description="Checkout",
        source=SOURCE,
        now=NOW,
        timeout_s=600,
    )
    await claw_back(run, merchant, e1, 150, "refund-1")  # available 70 - 150 = -80
    await run(ops.void, merchant, hold.entry_id, description="Cancelled")
    assert await balances(run, merchant, "alice") == (-50, 0, 0)
    await assert_verifies(engine, merchant)


async def test_release_due_is_not_blocked_by_one_member_in_debt(run, merchant):
    """Same cause, merchant-wide: release_due posts all due releases in one batch, so one
    member in debt made the job fail on every run and nobody's points were released
    (void_timed_out likewise)."""
    a1 = await earn(run, merchant, "alice", 50, "o1")
    await earn(run, merchant, "alice", 30, "o2", pending=True)
    await earn(run, merchant, "bob", 70, "o3", pending=True)
    await claw_back(run, merchant, a1, 100, "refund-1")  # alice: available -50
    assert len(await run(ops.release_due, merchant, now=NOW + timedelta(days=31))) == 2
    assert await balances(run, merchant, "bob") == (70, 0, 0)
    assert await balances(run, merchant, "alice") == (-20, 0, 0)


async def test_take_back_retry_after_pending_changed_claws_back_again(run, merchant, engine):
    """A refund retried under its key after the earn's pending shrank (here: released) posted a
    new `<key>:clawback` and took the points a second time."""
    e1 = await earn(run, merchant, "alice", 100, "o1", pending=True)
    await claw_back(run, merchant, e1, 40, "refund-1")  # all 40 from pending
    await run(ops.release, merchant, e1)
    assert await balances(run, merchant, "alice") == (60, 0, 0)
    retry = await run(
        ops.take_back, merchant, e1, 40, key="refund-1", description="Refund", source=SOURCE
    )
    assert all(e.replayed for e in retry)
    assert await balances(run, merchant, "alice") == (60, 0, 0)
    await assert_verifies(engine, merchant)


async def test_expire_due_twice_at_the_same_now_expires_new_points(run, merchant, engine):
    """Expiry entries were keyed `expire:<member>:<now>`: a second run at the same `now` (after
    a void put points back into an expired lot) replayed the first, expired nothing and still
    returned the points as expired, so a loop draining until 0 never ended."""
    expires = NOW - timedelta(days=1)
    await earn(run, merchant, "alice", 100, "o1", expires_at=expires)
    await earn(run, merchant, "alice", 50, "o2", expires_at=expires)
    hold = await run(
        ops.reserve,
        merchant,
        "alice",
        50,
        key="r1",
        description="Checkout",
        source=SOURCE,
        now=expires - timedelta(hours=1),
        timeout_s=600,
    )
    assert await run(ops.expire_due, merchant, now=NOW) == 100
    await run(ops.void, merchant, hold.entry_id, description="Cancelled")  # back into lot o1
    assert await balances(run, merchant, "alice") == (50, 0, 0)
    assert await run(ops.expire_due, merchant, now=NOW) == 50
    assert await balances(run, merchant, "alice") == (0, 0, 0)
    assert await run(ops.expire_due, merchant, now=NOW) == 0
    await assert_verifies(engine, merchant)


async def test_one_member_in_debt_does_not_stop_the_merchants_upkeep(engine, run, merchant):
    """Same cause as test_release_settles_part_of_a_debt: once release_due failed, expiry and
    sealing stopped for the whole merchant, on every upkeep pass."""
    a1 = await earn(run, merchant, "alice", 50, "o1")
    await earn(run, merchant, "alice", 30, "o2", pending=True)
    await earn(run, merchant, "bob", 70, "o3", pending=True)
    await claw_back(run, merchant, a1, 100, "refund-1")  # alice: available -50
    counts = await maintain_merchant(engine, merchant, NOW + timedelta(days=31))
    assert (counts.released, counts.sealed) == (2, 6)


async def test_void_into_debt_settles_from_the_earliest_expiring_lots(run, merchant, engine):
    """A void settles the member's debt out of the points it returns, earliest-expiring lot
    first; the rest goes back to the lots the hold took it from (a rare path for the machine)."""
    soon = await earn(run, merchant, "alice", 40, "o1", expires_at=NOW + timedelta(days=10))
    later = await earn(run, merchant, "alice", 40, "o2", expires_at=NOW + timedelta(days=90))
    hold = await run(
        ops.reserve,
        merchant,
        "alice",
        60,
        key="r1",
        description="Checkout",
        source=SOURCE,
        now=NOW,
        timeout_s=600,
    )  # takes 40 from `soon`, 20 from `later`; 20 left in `later`
    await claw_back(run, merchant, later, 50, "refund-1")  # available 20 - 50 = -30
    await run(ops.void, merchant, hold.entry_id, description="Cancelled")
    assert await balances(run, merchant, "alice") == (30, 0, 0)
    async with db.connection(engine) as pg:
        lots = dict(
            await pg.fetch(
                "SELECT lot_id, available_points FROM ledger_lots WHERE merchant_id = $1", merchant
            )
        )
    assert lots == {soon: 10, later: 20}
    await assert_verifies(engine, merchant)
