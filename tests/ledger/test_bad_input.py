"""Bad input is refused, naming the problem, and leaves the ledger exactly as it was.

Every refusal is checked three ways: the error's exact type, a message that names the problem,
and a snapshot of the merchant's ledger (balances, liability, system balances, entries,
postings, lots, holds, seal head) that must not change. Tamper attempts through the raw
connection must be refused by the database itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from pointguard import db
from pointguard.errors import (
    BatchTooLarge,
    CrossMerchantPosting,
    InsufficientPoints,
    InvalidAmount,
    InvalidEntry,
    InvalidReference,
    ReservationLapsed,
    TooFewPostings,
    UnbalancedEntry,
    UnknownAccount,
)
from pointguard.ledger import (
    AccountKind,
    AccountRef,
    EntryKind,
    NewEntry,
    Posting,
    member_account,
    member_balances,
    outstanding_liability,
    post_entries,
    system_account,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.entries import MAX_BATCH_ENTRIES
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
MISSING_ID = 9_000_000_000_000  # an entry / hold id no merchant has


# --- building blocks -------------------------------------------------------------------------


def avail(m: str, member: str) -> AccountRef:
    return member_account(m, member, AccountKind.AVAILABLE)


def pending(m: str, member: str) -> AccountRef:
    return member_account(m, member, AccountKind.PENDING)


def reserved(m: str, member: str) -> AccountRef:
    return member_account(m, member, AccountKind.RESERVED)


def issued(m: str) -> AccountRef:
    return system_account(m, AccountKind.ISSUED)


def entry(m: str, key: str, kind: Any, postings: list[Posting], **kw: Any) -> NewEntry:
    kw.setdefault("description", "test entry")
    kw.setdefault("source", "test")
    return NewEntry(merchant_id=m, idempotency_key=key, kind=kind, postings=postings, **kw)


def earn(m: str, key: str, member: str, points: int) -> NewEntry:
    return ops.earn_entry(m, member, points, key=key, description="earn", source="test")


async def fund(run: Any, m: str) -> dict[str, int]:
    """alice: 70 available + a 30-point open hold; bob: 40 pending. Returns the entry ids."""
    alice_earn = await run(ops.earn, m, "alice", 100, key="fund-alice", description="d", source="t")
    bob_earn = await run(
        ops.earn, m, "bob", 40, key="fund-bob", description="d", source="t", release_at=LATER
    )
    hold = await run(
        ops.reserve,
        m,
        "alice",
        30,
        key="fund-hold",
        description="d",
        source="t",
        now=NOW,
        timeout_s=600,
    )
    bal = await run(member_balances, m, "alice")
    assert (bal.available_points, bal.reserved_points) == (70, 30)
    return {"alice_earn": alice_earn.entry_id, "bob_earn": bob_earn.entry_id, "hold": hold.entry_id}


async def snapshot(engine: Any, *merchants: str) -> dict[str, Any]:
    """Everything the ledger stores for `merchants`, in a comparable form."""
    out: dict[str, Any] = {}
    async with db.connection(engine) as pg:
        for m in merchants:
            rows = {}
            for name, sql in {
                "accounts": "SELECT member_id, kind, balance_points FROM ledger_accounts"
                " WHERE merchant_id = $1 ORDER BY account_id",
                "entries": "SELECT entry_id, idempotency_key, kind, description, source,"
                " metadata::text, reverses, settles, seal_seq, seal_hash FROM ledger_entries"
                " WHERE merchant_id = $1 ORDER BY entry_id",
                "postings": "SELECT entry_id, account_id, amount_points FROM ledger_postings"
                " WHERE merchant_id = $1 ORDER BY entry_id, account_id",
                "lots": "SELECT lot_id, member_id, pending_points, available_points, release_at,"
                " expires_at, release_held FROM ledger_lots WHERE merchant_id = $1 ORDER BY lot_id",
                "holds": "SELECT hold_id, member_id, amount_points, status, closed_by"
                " FROM ledger_holds WHERE merchant_id = $1 ORDER BY hold_id",
                "hold_lots": "SELECT hold_id, lot_id, points FROM ledger_hold_lots"
                " WHERE merchant_id = $1 ORDER BY hold_id, lot_id",
                "seal_head": "SELECT last_seq, last_hash FROM ledger_seal_heads"
                " WHERE merchant_id = $1",
                "system_checkpoints": "SELECT account_id, sealed_balance_points"
                " FROM ledger_system_balances WHERE merchant_id = $1 ORDER BY account_id",
            }.items():
                rows[name] = [tuple(r) for r in await pg.fetch(sql, m)]
            rows["entry_count"] = len(rows["entries"])
            rows["posting_count"] = len(rows["postings"])
            rows["liability"] = await outstanding_liability(pg, m)
            rows["system_balances"] = await system_balances(pg, m)
            rows["balances"] = {
                member: await member_balances(pg, m, member)
                for member in sorted({r[0] for r in rows["accounts"]})
            }
            out[m] = rows
    return out


async def assert_refused(
    engine: Any,
    merchants: list[str],
    call: Callable[[], Awaitable[Any]],
    error: type[Exception],
    match: str,
) -> Any:
    """`call()` raises exactly `error` with a message matching `match`; nothing changes."""
    before = await snapshot(engine, *merchants)
    assert before[merchants[0]]["entry_count"] > 0, "snapshot of an empty ledger proves little"
    with pytest.raises(error, match=match) as info:
        await call()
    assert type(info.value) is error, f"expected exactly {error.__name__}, got {info.value!r}"
    assert await snapshot(engine, *merchants) == before
    return info.value


async def assert_verifies(engine: Any, run: Any, m: str) -> None:
    await run(seal, m)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, m)
    assert report.ok, report.problems


@pytest.fixture
async def funded(run: Any, merchant: str) -> dict[str, int]:
    return await fund(run, merchant)


@pytest.fixture
async def other(run: Any) -> str:
    """A second, funded merchant (for cross-merchant cases)."""
    m = f"m-{uuid.uuid4().hex[:12]}"
    await fund(run, m)
    return m


# --- refused before touching the database ----------------------------------------------------

Build = Callable[[str], list[NewEntry]]


def _earn_with(*amounts: Any) -> Build:
    """An earn to alice whose postings carry `amounts` (issued first, then alice available)."""
    return lambda m: [
        entry(
            m,
            "bad",
            EntryKind.EARN,
            [Posting(issued(m), amounts[0]), Posting(avail(m, "alice"), amounts[1])],
        )
    ]


INVALID_BATCHES: list[tuple[str, Build, type[Exception], str]] = [
    (
        "unbalanced",
        _earn_with(-100, 90),
        UnbalancedEntry,
        r"entry 'bad': postings sum to -10, must sum to 0",
    ),
    ("unbalanced-both-positive", _earn_with(50, 50), UnbalancedEntry, r"postings sum to 100"),
    (
        "one-posting",
        lambda m: [entry(m, "bad", EntryKind.EARN, [Posting(avail(m, "alice"), 100)])],
        TooFewPostings,
        r"entry 'bad': needs at least 2 postings, has 1",
    ),
    (
        "no-postings",
        lambda m: [entry(m, "bad", EntryKind.EARN, [])],
        TooFewPostings,
        r"needs at least 2 postings, has 0",
    ),
    (
        "zero-amount",
        _earn_with(0, 0),
        InvalidAmount,
        r"entry 'bad': amount_points must be non-zero.*got 0",
    ),
    (
        "zero-amount-balanced-by-others",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(avail(m, "alice"), 10),
                    Posting(pending(m, "alice"), 0),
                ],
                release_at=LATER,
            )
        ],
        InvalidAmount,
        r"must be non-zero.*got 0",
    ),
    (
        "too-large",
        _earn_with(-(10**12 + 1), 10**12 + 1),
        InvalidAmount,
        r"at most 1000000000000 in size, got -1000000000001",
    ),
    (
        "float",
        _earn_with(-100, 100.0),
        InvalidAmount,
        r"amount_points must be an integer, got 100\.0",
    ),
    ("fractional", _earn_with(-99.5, 99.5), InvalidAmount, r"must be an integer, got -99\.5"),
    ("bool", _earn_with(-1, True), InvalidAmount, r"must be an integer, got True"),
    ("string", _earn_with(-100, "100"), InvalidAmount, r"must be an integer, got '100'"),
    ("decimal", _earn_with(-100, Decimal(100)), InvalidAmount, r"must be an integer, got Decimal"),
    (
        "earn-takes-from-member",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(avail(m, "alice"), -100),
                    Posting(issued(m), 100),
                ],
            )
        ],
        InvalidEntry,
        r"entry 'bad': a earn entry cannot take from available",
    ),
    (
        "earn-into-reserved",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(reserved(m, "alice"), 10),
                ],
                hold_expires_at=LATER,
            )
        ],
        InvalidEntry,
        r"earn entry cannot give to reserved",
    ),
    (
        "reserve-backwards",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.RESERVE,
                [
                    Posting(avail(m, "alice"), 30),
                    Posting(reserved(m, "alice"), -30),
                ],
                hold_expires_at=LATER,
            )
        ],
        InvalidEntry,
        r"reserve entry cannot give to available",
    ),
    (
        "clawback-backwards",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.CLAWBACK,
                [
                    Posting(issued(m), -30),
                    Posting(avail(m, "alice"), 30),
                ],
            )
        ],
        InvalidEntry,
        r"clawback entry cannot take from issued",
    ),
    (
        "two-members",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -20),
                    Posting(avail(m, "alice"), 10),
                    Posting(avail(m, "bob"), 10),
                ],
            )
        ],
        InvalidEntry,
        r"earn entry touches exactly one member",
    ),
    (
        "no-member",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EXPIRE,
                [
                    Posting(issued(m), -20),
                    Posting(system_account(m, AccountKind.EXPIRED), 20),
                ],
            )
        ],
        InvalidEntry,
        r"expire entry touches exactly one member",
    ),
    (
        "same-account-twice",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(avail(m, "alice"), 5),
                    Posting(avail(m, "alice"), 5),
                ],
            )
        ],
        InvalidEntry,
        r"two postings on available of 'alice'",
    ),
    (
        "member-account-without-member",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(AccountRef(m, AccountKind.AVAILABLE, ""), 10),
                ],
            )
        ],
        InvalidEntry,
        r"available account needs member_id set iff member",
    ),
    (
        "system-account-with-member",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(AccountRef(m, AccountKind.ISSUED, "alice"), -10),
                    Posting(avail(m, "alice"), 10),
                ],
            )
        ],
        InvalidEntry,
        r"issued account needs member_id set iff member",
    ),
    (
        "pending-without-release-at",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(pending(m, "alice"), 10),
                ],
            )
        ],
        InvalidEntry,
        r"pending points need release_at",
    ),
    (
        "reserve-without-expiry",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.RESERVE,
                [
                    Posting(avail(m, "alice"), -10),
                    Posting(reserved(m, "alice"), 10),
                ],
            )
        ],
        InvalidEntry,
        r"a reservation needs hold_expires_at",
    ),
    (
        "release-without-settles",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.RELEASE,
                [
                    Posting(pending(m, "bob"), -40),
                    Posting(avail(m, "bob"), 40),
                ],
            )
        ],
        InvalidReference,
        r"release entry must name the entry it settles",
    ),
    (
        "earn-with-reverses",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [
                    Posting(issued(m), -10),
                    Posting(avail(m, "alice"), 10),
                ],
                reverses=1,
            )
        ],
        InvalidReference,
        r"earn entry takes no 'reverses' link",
    ),
    (
        "unknown-kind",
        lambda m: [
            entry(
                m,
                "bad",
                "gift",
                [
                    Posting(issued(m), -10),
                    Posting(avail(m, "alice"), 10),
                ],
            )
        ],
        InvalidEntry,
        r"unknown kind 'gift'",
    ),
    (
        "too-many-postings",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [Posting(issued(m), -16)] + [Posting(avail(m, f"u{i}"), 1) for i in range(16)],
            )
        ],
        InvalidEntry,
        r"at most 16 postings",
    ),
    (
        "empty-key",
        lambda m: [earn(m, "", "alice", 10)],
        InvalidEntry,
        r"idempotency_key must be 1\.\.255 chars",
    ),
    (
        "long-key",
        lambda m: [earn(m, "k" * 256, "alice", 10)],
        InvalidEntry,
        r"idempotency_key must be 1\.\.255 chars",
    ),
    (
        "empty-description",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [Posting(issued(m), -10), Posting(avail(m, "alice"), 10)],
                description="",
            )
        ],
        InvalidEntry,
        r"description must be 1\.\.500 chars",
    ),
    (
        "empty-source",
        lambda m: [
            entry(
                m,
                "bad",
                EntryKind.EARN,
                [Posting(issued(m), -10), Posting(avail(m, "alice"), 10)],
                source="",
            )
        ],
        InvalidEntry,
        r"source \(the rule that produced it\) is empty",
    ),
    ("empty-batch", lambda m: [], InvalidEntry, r"a batch needs at least one entry"),
    (
        "duplicate-key-in-batch",
        lambda m: [
            earn(m, "once", "alice", 10),
            earn(m, "dup", "bob", 10),
            earn(m, "dup", "carol", 20),
        ],
        InvalidEntry,
        r"idempotency key 'dup' twice in one batch",
    ),
    (
        "duplicate-of-existing-key-in-batch",
        lambda m: [earn(m, "fund-alice", "alice", 100), earn(m, "fund-alice", "alice", 100)],
        InvalidEntry,
        r"idempotency key 'fund-alice' twice in one batch",
    ),
    (
        "batch-too-large",
        lambda m: [earn(m, f"k{i}", "alice", 1) for i in range(MAX_BATCH_ENTRIES + 1)],
        BatchTooLarge,
        r"a batch holds at most 1000 entries, got 1001",
    ),
    (
        "invalid-last-entry-of-batch",
        lambda m: [
            earn(m, "ok1", "alice", 10),
            earn(m, "ok2", "carol", 10),
            *_earn_with(-10, 9)(m),
        ],
        UnbalancedEntry,
        r"entry 'bad': postings sum to -1",
    ),
]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [case[1:] for case in INVALID_BATCHES],
    ids=[case[0] for case in INVALID_BATCHES],
)
async def test_invalid_batch_is_refused(engine, run, merchant, funded, build, error, match):
    batch = build(merchant)
    await assert_refused(engine, [merchant], lambda: run(post_entries, batch), error, match)


async def test_largest_batch_is_accepted(engine, run, merchant, funded):
    """The boundary of `batch-too-large`: exactly MAX_BATCH_ENTRIES entries post."""
    batch = [earn(merchant, f"k{i}", f"u{i % 7}", 1) for i in range(MAX_BATCH_ENTRIES)]
    posted = await run(post_entries, batch)
    assert len(posted) == MAX_BATCH_ENTRIES and not any(p.replayed for p in posted)
    assert await run(outstanding_liability, merchant) == 100 + 40 + MAX_BATCH_ENTRIES
    await assert_verifies(engine, run, merchant)


OP_CASES: list[
    tuple[str, Callable[[str], tuple[Any, ...]], dict[str, Any], type[Exception], str]
] = [
    ("earn-zero", lambda m: (ops.earn, m, "alice", 0), {"key": "e0"}, InvalidAmount, r"got 0"),
    (
        "earn-negative",
        lambda m: (ops.earn, m, "alice", -50),
        {"key": "e-"},
        InvalidEntry,
        r"earn entry cannot (give to issued|take from available)",
    ),
    (
        "earn-float",
        lambda m: (ops.earn, m, "alice", 12.5),
        {"key": "ef"},
        InvalidAmount,
        r"must be an integer, got -12\.5",
    ),
    (
        "reserve-zero",
        lambda m: (ops.reserve, m, "alice", 0),
        {"key": "r0", "now": NOW, "timeout_s": 60},
        InvalidAmount,
        r"got 0",
    ),
    (
        "reserve-negative",
        lambda m: (ops.reserve, m, "alice", -10),
        {"key": "r-", "now": NOW, "timeout_s": 60},
        InvalidEntry,
        r"reserve entry cannot give to available",
    ),
    (
        "reserve-bool",
        lambda m: (ops.reserve, m, "alice", True),
        {"key": "rb", "now": NOW, "timeout_s": 60},
        InvalidAmount,
        r"must be an integer, got True",
    ),
    (
        "reserve-bad-timeout",
        lambda m: (ops.reserve, m, "alice", 10),
        {"key": "rt", "now": NOW, "timeout_s": 0},
        InvalidAmount,
        r"timeout_s must be 1\.\.604800, got 0",
    ),
    (
        "take-back-negative",
        lambda m: (ops.take_back, m, MISSING_ID, -5),
        {"key": "tb"},
        InvalidAmount,
        r"points to take back must be positive, got -5",
    ),
]


@pytest.mark.parametrize(
    ("call", "kwargs", "error", "match"),
    [case[1:] for case in OP_CASES],
    ids=[case[0] for case in OP_CASES],
)
async def test_invalid_operation_is_refused(
    engine, run, merchant, funded, call, kwargs, error, match
):
    op, *args = call(merchant)
    kwargs = {"description": "d", "source": "t", **kwargs}
    await assert_refused(engine, [merchant], lambda: run(op, *args, **kwargs), error, match)


# --- cross-merchant ---------------------------------------------------------------------------


async def test_posting_on_another_merchants_account(engine, run, merchant, funded, other):
    batch = [
        entry(
            merchant,
            "x",
            EntryKind.EARN,
            [
                Posting(issued(merchant), -10),
                Posting(avail(other, "alice"), 10),
            ],
        )
    ]
    await assert_refused(
        engine,
        [merchant, other],
        lambda: run(post_entries, batch),
        CrossMerchantPosting,
        rf"entry 'x': posting on an account of merchant '{other}'"
        rf" in an entry of merchant '{merchant}'",
    )


async def test_taking_from_another_merchants_member(engine, run, merchant, funded, other):
    """Alice of `other` holds 70 available; an entry of `merchant` must not spend them."""
    batch = [
        entry(
            merchant,
            "x",
            EntryKind.RESERVE,
            [
                Posting(avail(other, "alice"), -10),
                Posting(reserved(merchant, "alice"), 10),
            ],
            hold_expires_at=LATER,
        )
    ]
    await assert_refused(
        engine,
        [merchant, other],
        lambda: run(post_entries, batch),
        CrossMerchantPosting,
        rf"posting on an account of merchant '{other}'",
    )


async def test_batch_mixing_two_merchants(engine, run, merchant, funded, other):
    batch = [earn(merchant, "a", "alice", 10), earn(other, "b", "alice", 10)]
    await assert_refused(
        engine,
        [merchant, other],
        lambda: run(post_entries, batch),
        CrossMerchantPosting,
        rf"one batch belongs to one merchant: '{merchant}' and '{other}'",
    )


async def test_operations_on_another_merchants_entries(engine, run, merchant, funded, other):
    """Entry ids of one merchant mean nothing to another."""

    async def other_ids() -> tuple[int, int]:
        async with db.connection(engine) as pg:
            rows = await pg.fetch(
                "SELECT idempotency_key, entry_id FROM ledger_entries WHERE merchant_id = $1", other
            )
        ids = {r["idempotency_key"]: r["entry_id"] for r in rows}
        return ids["fund-bob"], ids["fund-hold"]

    other_earn, other_hold = await other_ids()
    both = [merchant, other]
    await assert_refused(
        engine,
        both,
        lambda: run(ops.capture, merchant, other_hold, description="d"),
        InvalidReference,
        rf"no reservation {other_hold} for merchant '{merchant}'",
    )
    await assert_refused(
        engine,
        both,
        lambda: run(ops.release, merchant, other_earn),
        InvalidReference,
        rf"entry {other_earn} of merchant '{merchant}' earned no points",
    )


# --- refused by the database: nothing of the batch remains ------------------------------------


async def test_spend_with_no_available_account_is_insufficient(engine, run, merchant, funded):
    """A member who never had available points gets InsufficientPoints(0), not a request error:
    'ghost' is unknown to the ledger, 'bob' holds only pending points."""
    for member in ("ghost", "bob"):
        error = await assert_refused(
            engine,
            [merchant],
            lambda member=member: run(
                ops.reserve,
                merchant,
                member,
                10,
                key=f"spend-{member}",
                description="d",
                source="t",
                now=NOW,
                timeout_s=60,
            ),
            InsufficientPoints,
            rf"member '{member}' has 0 points available, needs 10",
        )
        assert (error.member_id, error.available_points) == (member, 0)


async def test_unknown_account(engine, run, merchant, funded):
    clawback = [
        entry(
            merchant,
            "c",
            EntryKind.CLAWBACK,
            [
                Posting(avail(merchant, "ghost"), -10),
                Posting(issued(merchant), 10),
            ],
        )
    ]
    await assert_refused(
        engine,
        [merchant],
        lambda: run(post_entries, clawback),
        UnknownAccount,
        r"member 'ghost' has no available account",
    )


async def test_overdraft(engine, run, merchant, funded):
    error = await assert_refused(
        engine,
        [merchant],
        lambda: run(
            ops.reserve,
            merchant,
            "alice",
            71,
            key="r71",
            description="d",
            source="t",
            now=NOW,
            timeout_s=60,
        ),
        InsufficientPoints,
        r"member 'alice' has 70 points available, needs 71",
    )
    assert (error.member_id, error.available_points) == ("alice", 70)
    # The boundary: all 70 can be reserved.
    await run(
        ops.reserve,
        merchant,
        "alice",
        70,
        key="r70",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.reserved_points) == (0, 100)
    await assert_verifies(engine, run, merchant)


def _reserve(m: str, key: str, member: str, points: int) -> NewEntry:
    return entry(
        m,
        key,
        EntryKind.RESERVE,
        [
            Posting(avail(m, member), -points),
            Posting(reserved(m, member), points),
        ],
        hold_expires_at=LATER,
    )


async def _keys_present(engine: Any, m: str, keys: list[str]) -> list[str]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT idempotency_key FROM ledger_entries WHERE merchant_id = $1"
            " AND idempotency_key = ANY($2::text[])",
            m,
            keys,
        )
    return sorted(r[0] for r in rows)


async def test_batch_with_overdraft_in_the_middle_is_absent(engine, run, merchant, funded):
    batch = [
        earn(merchant, "b1", "carol", 25),
        _reserve(merchant, "b2", "alice", 500),
        earn(merchant, "b3", "dave", 5),
    ]
    error = await assert_refused(
        engine,
        [merchant],
        lambda: run(post_entries, batch),
        InsufficientPoints,
        r"member 'alice' has 70 points available, needs 500",
    )
    assert (error.member_id, error.available_points) == ("alice", 70)
    assert await _keys_present(engine, merchant, ["b1", "b2", "b3"]) == []
    assert (await run(member_balances, merchant, "carol")).total_points == 0


async def test_batch_overdraft_counts_earlier_entries_of_the_batch(engine, run, merchant, funded):
    """Entry 1 credits alice 50 (70 → 120); entry 2 spends 121 of them: refused, whole batch."""
    batch = [
        earn(merchant, "b1", "alice", 50),
        _reserve(merchant, "b2", "alice", 121),
        earn(merchant, "b3", "bob", 5),
    ]
    error = await assert_refused(
        engine,
        [merchant],
        lambda: run(post_entries, batch),
        InsufficientPoints,
        r"member 'alice' has 120 points available, needs 121",
    )
    assert error.member_id == "alice"
    assert await _keys_present(engine, merchant, ["b1", "b2", "b3"]) == []
    # With 120 the same batch posts.
    ok = [batch[0], _reserve(merchant, "b2", "alice", 120), batch[2]]
    await run(post_entries, ok)
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.reserved_points) == (0, 150)
    await assert_verifies(engine, run, merchant)


def _failing_capture(m: str) -> NewEntry:
    """Passes the balance check (alice holds 30 reserved) but settles no open hold."""
    return entry(
        m,
        "b2",
        EntryKind.CAPTURE,
        [Posting(reserved(m, "alice"), -30), Posting(system_account(m, AccountKind.REDEEMED), 30)],
        settles=MISSING_ID,
    )


async def test_batch_failing_after_its_writes_is_absent(engine, run, merchant, funded):
    """Entry 2 passes the balance check (alice holds 30 reserved) but settles no open hold, so
    it fails in the lots/holds step, after entry 1's balances and postings were written."""
    capture = _failing_capture(merchant)
    batch = [earn(merchant, "b1", "carol", 25), capture, earn(merchant, "b3", "dave", 5)]
    await assert_refused(
        engine,
        [merchant],
        lambda: run(post_entries, batch),
        InvalidReference,
        rf"entry 'b2': no open reservation {MISSING_ID} of 30 points for member 'alice'",
    )
    assert await _keys_present(engine, merchant, ["b1", "b2", "b3"]) == []


@pytest.mark.parametrize(
    ("second", "error"),
    [
        (lambda m: _reserve(m, "b2", "alice", 500), InsufficientPoints),
        (_failing_capture, InvalidReference),
    ],
    ids=["overdraft", "fails-after-writes"],
)
async def test_caught_batch_failure_leaves_nothing_in_callers_transaction(
    engine, run, merchant, funded, second, error
):
    """A caller that composes ledger calls in its own transaction (as `operations` invites),
    catches the ledger's error and commits must not commit part of the batch."""
    batch = [earn(merchant, "b1", "carol", 25), second(merchant), earn(merchant, "b3", "dave", 5)]
    before = await snapshot(engine, merchant)

    async def work(pg: Any) -> None:
        with pytest.raises(error):
            await post_entries(pg, batch)
        await ops.earn(pg, merchant, "erin", 5, key="after", description="d", source="t")

    await db.in_transaction(engine, work)
    assert await _keys_present(engine, merchant, ["after", "b1", "b2", "b3"]) == ["after"]
    after = await snapshot(engine, merchant)
    assert after[merchant]["entry_count"] == before[merchant]["entry_count"] + 1
    assert after[merchant]["posting_count"] == before[merchant]["posting_count"] + 2
    assert after[merchant]["liability"] == before[merchant]["liability"] + 5
    assert after[merchant]["holds"] == before[merchant]["holds"]
    assert (await run(member_balances, merchant, "carol")).total_points == 0
    await assert_verifies(engine, run, merchant)


# --- holds ------------------------------------------------------------------------------------


async def test_capture_of_unknown_hold(engine, run, merchant, funded):
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.capture, merchant, MISSING_ID, description="d"),
        InvalidReference,
        rf"no reservation {MISSING_ID} for merchant '{merchant}'",
    )
    # An earn's id is no hold either.
    earn_id = funded["alice_earn"]
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.capture, merchant, earn_id, description="d"),
        InvalidReference,
        rf"no reservation {earn_id} ",
    )
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.void, merchant, MISSING_ID, description="d"),
        InvalidReference,
        rf"no reservation {MISSING_ID}",
    )


def key_of(kind: str, hold: int) -> str:
    """The quoted ledger key of `kind` on `hold`, as a pattern for messages."""
    return re.escape(repr(idempotency_key(kind, hold)))


async def test_capture_of_voided_hold_without_the_points(engine, run, merchant, funded):
    """A late capture reserves a voided hold's points again (`test_capture_grace`); when the
    member no longer has them it is refused, typed, and changes nothing."""
    hold = funded["hold"]
    await run(ops.void, merchant, hold, description="cancelled")
    available = (await run(member_balances, merchant, "alice")).available_points
    other_hold = await run(
        ops.reserve,
        merchant,
        "alice",
        available - 10,
        key="h2",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.capture, merchant, hold, description="d"),
        ReservationLapsed,
        rf"reservation {hold} was voided and member 'alice' has 10 points available,"
        " the capture needs 30",
    )
    # ...and the other one can.
    await run(ops.capture, merchant, other_hold.entry_id, description="paid")
    await assert_verifies(engine, run, merchant)


async def test_void_of_captured_hold(engine, run, merchant, funded):
    hold = funded["hold"]
    await run(ops.capture, merchant, hold, description="paid")
    await run(
        ops.reserve,
        merchant,
        "alice",
        30,
        key="h2",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.void, merchant, hold, description="d"),
        InvalidReference,
        rf"entry {key_of('void', hold)}: no open reservation {hold} of 30 points",
    )
    # capturing it again is a replay, not a second spend
    replay = await run(ops.capture, merchant, hold, description="paid again")
    assert replay.replayed
    assert (await run(system_balances, merchant))[AccountKind.REDEEMED] == 30


async def test_release_of_unknown_or_released_earn(engine, run, merchant, funded):
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.release, merchant, MISSING_ID),
        InvalidReference,
        rf"entry {MISSING_ID} of merchant '{merchant}' earned no points",
    )
    hold = funded["hold"]
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.release, merchant, hold),
        InvalidReference,
        rf"entry {hold} of merchant '{merchant}' earned no points",
    )
    # alice's earn was available from the start: nothing to release
    alice_earn = funded["alice_earn"]
    await assert_refused(
        engine,
        [merchant],
        lambda: run(ops.release, merchant, alice_earn),
        InvalidReference,
        rf"entry {alice_earn} has no pending points to release",
    )


# --- append-only, enforced by the database ----------------------------------------------------

TAMPERING = [
    (
        "update-posting",
        "UPDATE ledger_postings SET amount_points = amount_points * 2 WHERE merchant_id = $1",
        r"ledger ledger_postings is append-only: UPDATE refused",
    ),
    (
        "delete-posting",
        "DELETE FROM ledger_postings WHERE merchant_id = $1",
        r"ledger ledger_postings is append-only: DELETE refused",
    ),
    (
        "delete-entry",
        "DELETE FROM ledger_entries WHERE merchant_id = $1",
        r"ledger ledger_entries is append-only: DELETE refused",
    ),
    (
        "update-entry",
        "UPDATE ledger_entries SET description = 'free points' WHERE merchant_id = $1",
        r"only the sealer may stamp an entry, once",
    ),
    (
        "stamp-and-change-entry",
        "UPDATE ledger_entries SET seal_seq = entry_id, seal_hash = '\\x00',"
        " kind = 'reversal' WHERE merchant_id = $1",
        r"only the sealer may stamp an entry, once",
    ),
    (
        "unstamp-entry",
        "UPDATE ledger_entries SET seal_seq = NULL, seal_hash = NULL WHERE merchant_id = $1",
        r"only the sealer may stamp an entry, once",
    ),
]


@pytest.mark.parametrize(
    ("sql", "match"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
async def test_append_only_refused_by_database(engine, run, merchant, funded, sql, match):
    async def tamper() -> None:
        async with db.connection(engine) as pg:  # autocommit: a missing guard would show
            await pg.execute(sql, merchant)

    error = await assert_refused(
        engine, [merchant], tamper, asyncpg.exceptions.RestrictViolationError, match
    )
    assert error.sqlstate == "23001"
    await assert_verifies(engine, run, merchant)


async def test_truncate_postings_refused(engine, run, merchant, funded):
    async def tamper() -> None:
        async with db.connection(engine) as pg:
            tx = pg.transaction()
            await tx.start()
            try:  # other tests' rows live in this table: never let a truncate commit
                await pg.execute("TRUNCATE ledger_postings")
            finally:
                await tx.rollback()

    await assert_refused(
        engine,
        [merchant],
        tamper,
        asyncpg.exceptions.RestrictViolationError,
        r"ledger ledger_postings is append-only: TRUNCATE refused",
    )


RESTAMPS = [
    ("new-seq-and-hash", "seal_seq = seal_seq + 1000, seal_hash = '\\x00'"),
    ("new-hash", "seal_hash = sha256(seal_hash)"),
    ("same-values", "seal_seq = seal_seq, seal_hash = seal_hash"),
    ("unseal", "seal_seq = NULL, seal_hash = NULL"),
]


@pytest.mark.parametrize("assignment", [r[1] for r in RESTAMPS], ids=[r[0] for r in RESTAMPS])
async def test_sealed_entry_cannot_be_restamped(engine, run, merchant, funded, assignment):
    assert await run(seal, merchant) == 3
    sql = f"UPDATE ledger_entries SET {assignment} WHERE merchant_id = $1 AND entry_id = $2"

    async def tamper() -> None:
        async with db.connection(engine) as pg:
            await pg.execute(sql, merchant, funded["alice_earn"])

    await assert_refused(
        engine,
        [merchant],
        tamper,
        asyncpg.exceptions.RestrictViolationError,
        r"only the sealer may stamp an entry, once",
    )
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok and report.entries_sealed == 3, report.problems


async def test_tampered_balance_is_caught_by_verify(engine, run, merchant, funded):
    """Member balances are mutable rows (they are locked and updated by every entry); changing
    one by hand is not refused, but verify must report it."""
    await assert_verifies(engine, run, merchant)
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE ledger_accounts SET balance_points = balance_points + 1000"
            " WHERE merchant_id = $1 AND member_id = 'alice' AND kind = 'available'",
            merchant,
        )
        report = await verify_merchant(pg, merchant)
    assert not report.ok
    assert any("member alice available: stored 1070, postings say 70" in p for p in report.problems)
