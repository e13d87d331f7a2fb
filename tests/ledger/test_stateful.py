"""A stateful (hypothesis) test of the ledger against the real PostgreSQL.

`LedgerMachine` drives the ledger operations of `pointguard.ledger.operations` for a few
members of one fresh merchant, on a simulated clock, each in its own transaction. Next to the
database it keeps a plain Python model: per member `available`, `pending`, `reserved`; per
lot its pending and available points (lot semantics as in `effects.py`: spends and expiry take
the earliest-expiring lots first, voids put points back into the lots they came from, credits
to a negative `available` settle the debt first); per hold its lots and status; the system
accounts and the number of entries. After every step the database must agree with the model
exactly and satisfy the ledger invariants, checked with SQL; `verify_merchant` runs every few
steps and at the end of every example, after sealing.

Hypothesis state machines are synchronous, so the machine runs each step on a private event
loop with its own engine (not the session's `engine` fixture, whose loop is pytest-asyncio's).

The regression tests at the end pin ledger behaviour the machine found wrong; they are
`xfail(strict=True)` until `pointguard/` is fixed, and the machine steers around them (see
the `KNOWN BUG` comments).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.errors import InsufficientPoints, InvalidReference, UnknownAccount
from pointguard.ledger import (
    AccountKind,
    EntryKind,
    member_balances,
    outstanding_liability,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

T = TypeVar("T")
A = AccountKind

START = datetime(2026, 1, 1, tzinfo=UTC)
MEMBERS = ("ann", "bob", "cy", "dee")
SOURCE = "test.stateful"
VERIFY_EVERY = 5
NOT_A_REFERENCE = 10**15  # no entry of any merchant has this id

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

    def run(self, coro: Awaitable[T]) -> T:
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


@dataclass
class Lot:
    lot_id: int
    member: str
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


@dataclass
class Member:
    available: int = 0
    pending: int = 0
    reserved: int = 0
    has_available_account: bool = False
    clawed_back: bool = False


@dataclass
class Call:
    """An earlier call, kept so a rule can repeat it with the same idempotency key."""

    key: str
    args: tuple[Any, ...]
    result: Any
    kwargs: dict[str, Any] = field(default_factory=dict)


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
        self.system = {A.ISSUED: 0, A.REDEEMED: 0, A.EXPIRED: 0, A.FORFEITED: 0}
        self.entries = 0
        self.sealed = 0
        self.checks = 0
        self.earn_calls: list[Call] = []
        self.reserve_calls: list[Call] = []
        self.take_back_calls: list[Call] = []

    # -- plumbing --

    def key(self, what: str) -> str:
        return f"{what}-{next(self.counter)}"

    def tx(self, op: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`op(pg, merchant, *args, **kwargs)` in its own transaction."""
        return self.runner.run(
            db.in_transaction(self.runner.engine, lambda pg: op(pg, self.merchant, *args, **kwargs))
        )

    def refused(
        self,
        error: type[Exception] | tuple[type[Exception], ...],
        op: Callable[..., Awaitable[Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
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

    # -- rules: earning --

    @rule(
        target=earns,
        member=st.sampled_from(MEMBERS),
        points=st.integers(1, 500),
        pending=st.booleans(),
        release_in_h=st.integers(-24, 30 * 24),
        expires_in_h=st.none() | st.integers(-48, 90 * 24),
    )
    def earn(
        self, member: str, points: int, pending: bool, release_in_h: int, expires_in_h: int | None
    ) -> int:
        release_at = self.now + timedelta(hours=release_in_h) if pending else None
        expires_at = None if expires_in_h is None else self.now + timedelta(hours=expires_in_h)
        key = self.key("earn")
        entry = self.tx(
            ops.earn, member, points, key=key, description=f"{points} points", source=SOURCE,
            release_at=release_at, expires_at=expires_at,
        )
        assert not entry.replayed and entry.kind == EntryKind.EARN
        self.entries += 1
        self.system[A.ISSUED] -= points
        lot = Lot(entry.entry_id, member, 0, 0, release_at, expires_at)
        if pending:
            self.members[member].pending += points
            lot.pending = points
        else:
            lot.available = max(0, points - self._credit_available(member, points))
        self.lots[entry.entry_id] = lot
        self.earn_calls.append(Call(key, (member, points), entry.entry_id))
        return entry.entry_id

    @precondition(lambda self: self.earn_calls)
    @rule(data=st.data())
    def replay_earn(self, data: st.DataObject) -> None:
        """The same key again, even with other content, returns the first entry, changes nothing."""
        call = data.draw(st.sampled_from(self.earn_calls))
        entry = self.tx(
            ops.earn, "someone-else", 999, key=call.key, description="retry", source=SOURCE
        )
        assert entry.replayed and entry.entry_id == call.result

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

    @rule(earn=earns, held=st.booleans())
    def set_release_held(self, earn: int, held: bool) -> None:
        self.tx(ops.set_release_held, earn, held=held)
        self.lots[earn].held = held

    @rule()
    def release_due(self) -> None:
        due = sorted(
            (
                lot for lot in self.lots.values()
                if lot.pending > 0 and not lot.held
                and lot.release_at is not None and lot.release_at <= self.now
            ),
            key=lambda lot: (lot.release_at, lot.lot_id),
        )
        assert self.tx(ops.release_due, now=self.now) == len(due)
        for lot in due:
            self._release(lot)

    @rule(earn=earns)
    def forfeit(self, earn: int) -> None:
        lot = self.lots[earn]
        if lot.pending == 0:
            self.refused(InvalidReference, ops.forfeit, earn, description="Fraud", source=SOURCE)
            return
        entry = self.tx(ops.forfeit, earn, description="Fraud", source=SOURCE)
        assert entry.kind == EntryKind.FORFEIT and entry.reverses == earn
        self.members[lot.member].pending -= lot.pending
        self.system[A.FORFEITED] += lot.pending
        lot.pending = 0
        self.entries += 1

    @rule(earn=earns, points=st.integers(1, 600))
    def take_back(self, earn: int, points: int) -> None:
        lot = self.lots[earn]
        m = self.members[lot.member]
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
        self.system[A.ISSUED] += points
        lot.pending -= from_pending
        m.pending -= from_pending
        if rest:
            m.available -= rest
            m.clawed_back = True
            self._consume(lot.member, rest)
        self.take_back_calls.append(Call(key, (earn, points), posted, kwargs))

    # KNOWN BUG (test_take_back_retry_after_pending_changed_claws_back_again): a retry whose
    # first run took everything from pending posts a fresh clawback once that pending has
    # shrunk. Only retries the ledger gets right are made here: the first run took some
    # points from available, or the earn's pending still covers the whole refund.
    @precondition(lambda self: self.take_back_calls)
    @rule(data=st.data())
    def replay_take_back(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.take_back_calls))
        earn, points = call.args
        first_kinds = [e.kind for e in call.result]
        if EntryKind.CLAWBACK not in first_kinds and self.lots[earn].pending < points:
            return
        posted = self.tx(ops.take_back, earn, points, **call.kwargs)
        assert posted and all(e.replayed for e in posted)
        first = {e.idempotency_key: e.entry_id for e in call.result}
        assert all(first[e.idempotency_key] == e.entry_id for e in posted)

    # -- rules: spending --

    @rule(
        target=holds,
        member=st.sampled_from(MEMBERS),
        points=st.integers(1, 600),
        timeout_h=st.integers(1, 72),
    )
    def reserve(self, member: str, points: int, timeout_h: int) -> Any:
        m = self.members[member]
        key = self.key("reserve")
        kwargs = {
            "key": key, "description": "Checkout", "source": SOURCE, "now": self.now,
            "timeout_s": timeout_h * 3600,
        }
        if not m.has_available_account:
            # KNOWN BUG (test_reserve_without_available_account_is_insufficient_points):
            # this should be InsufficientPoints(available_points=0).
            self.refused((InsufficientPoints, UnknownAccount), ops.reserve, member, points, **kwargs)
            return multiple()
        if m.available < points:
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
        self.reserve_calls.append(Call(key, (member, points), entry.entry_id, kwargs))
        return entry.entry_id

    @precondition(lambda self: self.reserve_calls)
    @rule(data=st.data())
    def replay_reserve(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.reserve_calls))
        kwargs = {**call.kwargs, "now": self.now, "timeout_s": 60}
        entry = self.tx(ops.reserve, "someone-else", 1, **kwargs)
        assert entry.replayed and entry.entry_id == call.result

    @rule(hold=holds)
    def capture(self, hold: int) -> None:
        h = self.hold_model[hold]
        if h.status == "voided":
            self.refused(InvalidReference, ops.capture, hold, description="Redeemed")
            return
        entry = self.tx(ops.capture, hold, description="Redeemed")
        assert entry.kind == EntryKind.CAPTURE and entry.settles == hold
        assert entry.replayed == (h.status == "captured")
        if h.status == "open":
            h.status = "captured"
            self.members[h.member].reserved -= h.amount
            self.system[A.REDEEMED] += h.amount
            self.entries += 1

    @rule(hold=holds)
    def void(self, hold: int) -> None:
        h = self.hold_model[hold]
        if h.status == "captured":
            self.refused(InvalidReference, ops.void, hold, description="Cancelled")
            return
        entry = self.tx(ops.void, hold, description="Cancelled")
        assert entry.kind == EntryKind.VOID and entry.reverses == hold
        assert entry.replayed == (h.status == "voided")
        if h.status == "open":
            self._void(h)

    @rule()
    def void_timed_out(self) -> None:
        due = sorted(
            (h for h in self.hold_model.values() if h.status == "open" and h.expires_at <= self.now),
            key=lambda h: (h.expires_at, h.hold_id),
        )
        assert self.tx(ops.void_timed_out, now=self.now) == len(due)
        for h in due:
            self._void(h)

    # -- rules: references that do not fit --

    @rule(earn=earns)
    def close_an_earn(self, earn: int) -> None:
        self.refused(InvalidReference, ops.capture, earn, description="x")
        self.refused(InvalidReference, ops.void, earn, description="x")

    @rule(hold=holds)
    def earn_ops_on_a_hold(self, hold: int) -> None:
        self.refused(InvalidReference, ops.release, hold)
        self.refused(InvalidReference, ops.forfeit, hold, description="x", source=SOURCE)
        self.refused(InvalidReference, ops.set_release_held, hold, held=True)
        self.refused(
            InvalidReference, ops.take_back, hold, 1, key=self.key("bad"), description="x",
            source=SOURCE,
        )

    @rule()
    def unknown_references(self) -> None:
        self.refused(InvalidReference, ops.release, NOT_A_REFERENCE)
        self.refused(InvalidReference, ops.capture, NOT_A_REFERENCE, description="x")
        self.refused(InvalidReference, ops.void, NOT_A_REFERENCE, description="x")

    # -- rules: time and background jobs --

    @rule(hours=st.integers(1, 45 * 24))
    def advance_clock(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    # KNOWN BUG (test_expire_due_twice_at_the_same_now_expires_new_points): the expiry entry's
    # idempotency key is `expire:<member>:<now>`, so a second run at the same `now` replays
    # and expires nothing. The job always runs on a clock that has moved (as a real one does).
    @rule()
    def expire_due(self) -> None:
        self.now += timedelta(seconds=1)
        due: dict[str, int] = {}
        for lot in self.lots.values():
            if lot.available > 0 and lot.expires_at is not None and lot.expires_at <= self.now:
                due[lot.member] = due.get(lot.member, 0) + lot.available
                lot.available = 0
        assert self.tx(ops.expire_due, now=self.now) == sum(due.values())
        for member, points in due.items():
            self.members[member].available -= points
            self.system[A.EXPIRED] += points
            self.entries += 1

    @rule()
    def seal_entries(self) -> None:
        assert self.tx(seal) == self.entries - self.sealed
        self.sealed = self.entries

    @rule()
    def verify(self) -> None:
        self.runner.run(self._verify())

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
                got = {k: stored.get((name, k.value)) for k in (A.AVAILABLE, A.PENDING, A.RESERVED)}
                assert (got[A.AVAILABLE] is not None) == m.has_available_account, (name, got)
                got = {k: v or 0 for k, v in got.items()}
                assert (got[A.AVAILABLE], got[A.PENDING], got[A.RESERVED]) == (
                    m.available, m.pending, m.reserved
                ), (name, got, m)
                assert got[A.PENDING] >= 0 and got[A.RESERVED] >= 0
                assert got[A.AVAILABLE] >= 0 or m.clawed_back, (name, got)
                bal = await member_balances(pg, merchant, name)
                assert (bal.available_points, bal.pending_points, bal.reserved_points) == (
                    m.available, m.pending, m.reserved
                )

            # Liability: members' balances, and minus the system accounts.
            liability = await outstanding_liability(pg, merchant)
            assert liability == sum(stored.values())
            assert liability == sum(m.available + m.pending + m.reserved for m in self.members.values())
            system = await system_balances(pg, merchant)
            assert system == self.system, (system, self.system)
            assert sum(system.values()) == -liability
            assert await pg.fetchval(SYSTEM_POSTED, merchant) == -liability

            # Lots, holds and the lots holds took, exactly as modelled.
            lots = {
                r["lot_id"]: (r["member_id"], r["pending_points"], r["available_points"], r["release_held"])
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

            # Lots back balances (verify's rule): available lots = max(0, available), etc.
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


def test_ledger_state_machine(runner: Runner) -> None:
    LedgerMachine.runner = runner
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# --- regressions: ledger behaviour the machine found wrong -----------------------------------

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
