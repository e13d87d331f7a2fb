"""Concurrent transactions against the real database: no overdraft, no double credit, no
deadlock that escapes the retries, and a ledger that verifies afterwards.

Each coroutine runs its operation in its own transaction on its own pooled connection
(`run`; the session engine's pool holds 20 + 20 overflow connections).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pointguard import db
from pointguard.errors import InsufficientPoints
from pointguard.ledger import (
    AccountKind,
    member_balances,
    outstanding_liability,
    post_entries,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


async def gather(*calls: Any) -> list[Any]:
    """Run all at once; results and exceptions in order."""
    return await asyncio.gather(*calls, return_exceptions=True)


def split(results: list[Any]) -> tuple[list[Any], list[BaseException]]:
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    return ok, failed


async def assert_verifies(engine: Any, run: Any, merchant: str) -> None:
    await run(seal, merchant)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems


async def count(engine: Any, sql: str, *args: Any) -> int:
    async with db.connection(engine) as pg:
        return int(await pg.fetchval(sql, *args))


async def test_concurrent_reserves_never_overdraw(engine, run, merchant):
    await run(ops.earn, merchant, "alice", 100, key="e", description="d", source="t")
    results = await gather(
        *(
            run(
                ops.reserve,
                merchant,
                "alice",
                10,
                key=f"r{i}",
                description="checkout",
                source="t",
                now=NOW,
                timeout_s=600,
            )
            for i in range(50)
        )
    )
    ok, failed = split(results)
    unexpected = [f for f in failed if not isinstance(f, InsufficientPoints)]
    assert not unexpected, unexpected
    assert (len(ok), len(failed)) == (10, 40)
    assert len({r.entry_id for r in ok}) == 10 and not any(r.replayed for r in ok)
    for error in failed:
        assert (error.member_id, error.available_points) == ("alice", 0)
        assert "member 'alice' has 0 points available, needs 10" in str(error)

    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.pending_points, bal.reserved_points) == (0, 0, 100)
    assert await run(outstanding_liability, merchant) == 100
    # only the 10 winners left an entry, and each opened one 10-point hold
    assert (
        await count(
            engine,
            "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1 AND kind = 'reserve'",
            merchant,
        )
        == 10
    )
    assert (
        await count(
            engine,
            "SELECT count(*) FROM ledger_holds WHERE merchant_id = $1"
            " AND status = 'open' AND amount_points = 10",
            merchant,
        )
        == 10
    )
    await assert_verifies(engine, run, merchant)


async def test_concurrent_reserves_of_uneven_sizes(engine, run, merchant):
    """Whatever the interleaving, the winners together never exceed what alice held."""
    await run(ops.earn, merchant, "alice", 100, key="e1", description="d", source="t")
    await run(
        ops.earn,
        merchant,
        "alice",
        37,
        key="e2",
        description="d",
        source="t",
        expires_at=NOW + timedelta(days=3),
    )
    sizes = [random.Random(i).randint(1, 30) for i in range(40)]
    results = await gather(
        *(
            run(
                ops.reserve,
                merchant,
                "alice",
                points,
                key=f"r{i}",
                description="checkout",
                source="t",
                now=NOW,
                timeout_s=600,
            )
            for i, points in enumerate(sizes)
        )
    )
    ok, failed = split(results)
    assert all(isinstance(f, InsufficientPoints) for f in failed), failed
    taken = sum(
        -p.amount_points for r in ok for p in r.postings if p.account.kind == AccountKind.AVAILABLE
    )
    assert taken <= 137
    # every refusal was right at the moment it happened: fewer points left than it asked for
    for error, points in zip(results, sizes, strict=True):
        if isinstance(error, InsufficientPoints):
            assert error.available_points < points
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.reserved_points) == (137 - taken, taken)
    for error, points in zip(results, sizes, strict=True):
        if isinstance(error, InsufficientPoints):  # what is left is still too little for it
            assert points > bal.available_points
    await assert_verifies(engine, run, merchant)


async def test_concurrent_replays_of_one_earn_credit_once(engine, run, merchant):
    results = await gather(
        *(
            run(ops.earn, merchant, "alice", 75, key="order-1", description="order #1", source="t")
            for _ in range(20)
        )
    )
    ok, failed = split(results)
    assert not failed, failed
    assert len(ok) == 20
    assert len({r.entry_id for r in ok}) == 1
    assert Counter(r.replayed for r in ok) == Counter({True: 19, False: 1})
    for r in ok:  # a replay returns the first entry in full
        assert r.idempotency_key == "order-1" and r.description == "order #1"
        assert sorted(p.amount_points for p in r.postings) == [-75, 75]

    assert (
        await count(engine, "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1", merchant)
        == 1
    )
    assert (
        await count(engine, "SELECT count(*) FROM ledger_postings WHERE merchant_id = $1", merchant)
        == 2
    )
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.pending_points) == (75, 0)
    assert (await run(system_balances, merchant))[AccountKind.ISSUED] == -75
    await assert_verifies(engine, run, merchant)


async def test_concurrent_replays_of_one_batch_credit_once(engine, run, merchant):
    """Whole batches with the same keys, racing; members' accounts are created by the race."""
    batch = [
        ops.earn_entry(merchant, f"u{i}", 10 + i, key=f"b-{i}", description="d", source="t")
        for i in range(8)
    ]
    results = await gather(*(run(post_entries, batch) for _ in range(20)))
    ok, failed = split(results)
    assert not failed, failed
    assert all([e.entry_id for e in r] == [e.entry_id for e in ok[0]] for r in ok)
    assert sum(not r[0].replayed for r in ok) == 1
    assert (
        await count(engine, "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1", merchant)
        == 8
    )
    for i in range(8):
        assert (await run(member_balances, merchant, f"u{i}")).available_points == 10 + i
    await assert_verifies(engine, run, merchant)


async def test_concurrent_replays_of_one_reserve_hold_once(engine, run, merchant):
    await run(ops.earn, merchant, "alice", 50, key="e", description="d", source="t")
    results = await gather(
        *(
            run(
                ops.reserve,
                merchant,
                "alice",
                40,
                key="checkout-1",
                description="d",
                source="t",
                now=NOW,
                timeout_s=600,
            )
            for _ in range(20)
        )
    )
    ok, failed = split(results)
    assert not failed, failed  # a replay is not refused for want of points
    assert len({r.entry_id for r in ok}) == 1
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.reserved_points) == (10, 40)
    await assert_verifies(engine, run, merchant)


async def test_concurrent_capture_and_void_of_one_hold(engine, run, merchant):
    """A hold is spent at most once: racing captures and voids leave one void, one capture, or
    a void and then a late capture that reserved the points again (the capture grace,
    `ops.capture`), never a second capture or a second void."""
    await run(ops.earn, merchant, "alice", 50, key="e", description="d", source="t")
    hold = await run(
        ops.reserve,
        merchant,
        "alice",
        30,
        key="h",
        description="d",
        source="t",
        now=NOW,
        timeout_s=600,
    )
    calls = [
        run(ops.capture if i % 2 else ops.void, merchant, hold.entry_id, description="d")
        for i in range(20)
    ]
    results = await gather(*calls)
    ok, _failed = split(results)
    assert ok
    closing = {
        kind: await count(
            engine,
            "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1 AND kind = $2",
            merchant,
            kind,
        )
        for kind in ("capture", "void")
    }
    assert closing in (
        {"capture": 1, "void": 0},
        {"capture": 0, "void": 1},
        {"capture": 1, "void": 1},
    )
    bal = await run(member_balances, merchant, "alice")
    redeemed = (await run(system_balances, merchant))[AccountKind.REDEEMED]
    assert bal.reserved_points == 0
    captured = closing["capture"] == 1
    assert (bal.available_points, redeemed) == ((20, 30) if captured else (50, 0))
    await assert_verifies(engine, run, merchant)


async def test_concurrent_mixed_traffic_verifies(engine, run, merchant):
    """Earns (available and pending), reserves, captures, voids, releases and multi-member
    batches on one merchant, all interleaved; afterwards every total adds up and verify passes."""
    members = [f"member-{i}" for i in range(6)]
    rng = random.Random(20261125)
    await gather(
        *(
            run(
                ops.earn,
                merchant,
                m,
                50,
                key=f"seed-{m}",
                description="d",
                source="t",
                expires_at=NOW + timedelta(days=rng.randint(1, 90)),
            )
            for m in members
        )
    )

    earned: Counter[str] = Counter({m: 50 for m in members})
    calls: list[tuple[str, str, int, Any]] = []
    for i in range(120):
        m = rng.choice(members)
        points = rng.randint(1, 25)
        choice = rng.random()
        if choice < 0.3:
            calls.append(
                (
                    "earn",
                    m,
                    points,
                    run(
                        ops.earn,
                        merchant,
                        m,
                        points,
                        key=f"earn-{i}",
                        description="d",
                        source="t",
                        expires_at=NOW + timedelta(days=rng.randint(1, 90)),
                    ),
                )
            )
        elif choice < 0.4:
            calls.append(
                (
                    "pending",
                    m,
                    points,
                    run(
                        ops.earn,
                        merchant,
                        m,
                        points,
                        key=f"pend-{i}",
                        description="d",
                        source="t",
                        release_at=NOW - timedelta(minutes=1),
                    ),
                )
            )
        elif choice < 0.5:
            # one batch crediting several members, in an order that differs per batch
            group = rng.sample(members, 3)
            batch = [
                ops.earn_entry(
                    merchant, g, points, key=f"multi-{i}-{g}", description="d", source="t"
                )
                for g in group
            ]
            calls.append(("multi", ",".join(group), points, run(post_entries, batch)))
        else:
            calls.append(
                (
                    "reserve",
                    m,
                    points,
                    run(
                        ops.reserve,
                        merchant,
                        m,
                        points,
                        key=f"res-{i}",
                        description="d",
                        source="t",
                        now=NOW,
                        timeout_s=600,
                    ),
                )
            )
    results = await gather(*(c[3] for c in calls))
    unexpected = [
        (c[:3], r)
        for c, r in zip(calls, results, strict=True)
        if isinstance(r, BaseException)
        and not (c[0] == "reserve" and isinstance(r, InsufficientPoints))
    ]
    assert not unexpected, unexpected

    pending: Counter[str] = Counter()
    holds: list[Any] = []
    for (kind, who, points, _), result in zip(calls, results, strict=True):
        if isinstance(result, BaseException):
            continue
        if kind == "earn":
            earned[who] += points
        elif kind == "pending":
            pending[who] += points
        elif kind == "multi":
            for g in who.split(","):
                earned[g] += points
        else:
            holds.append(result)
    assert holds, "some reservations should have gone through"

    # second wave: close every hold (alternately capture / void) while releases and more
    # reserves run against the same members
    second = [
        run(ops.capture if n % 2 else ops.void, merchant, h.entry_id, description="d")
        for n, h in enumerate(holds)
    ]
    second += [run(ops.release_due, merchant, now=NOW) for _ in range(3)]
    results2 = await gather(*second)
    assert not [r for r in results2 if isinstance(r, BaseException)], results2

    captured = sum(
        p.amount_points
        for n, h in enumerate(holds)
        if n % 2
        for p in h.postings
        if p.account.kind == AccountKind.RESERVED
    )
    total_earned = sum(earned.values()) + sum(pending.values())
    sysb = await run(system_balances, merchant)
    assert sysb[AccountKind.ISSUED] == -total_earned
    assert sysb[AccountKind.REDEEMED] == captured
    assert await run(outstanding_liability, merchant) == total_earned - captured
    for m in members:
        bal = await run(member_balances, merchant, m)
        assert bal.reserved_points == 0 and bal.pending_points == 0, (m, bal)
        mine = sum(
            p.amount_points
            for n, h in enumerate(holds)
            if n % 2
            for p in h.postings
            if p.account.kind == AccountKind.RESERVED and p.account.member_id == m
        )
        assert bal.available_points == earned[m] + pending[m] - mine, m
    await assert_verifies(engine, run, merchant)


async def test_concurrent_sealing_while_posting(engine, run, merchant):
    """The sealer runs alongside writers; every entry ends up sealed exactly once, in a chain
    that verifies."""

    async def writer(w: int) -> None:
        for i in range(10):
            await run(
                ops.earn, merchant, f"u{w}", 1 + i, key=f"w{w}-{i}", description="d", source="t"
            )

    async def sealer() -> int:
        total = 0
        for _ in range(15):
            total += await run(seal, merchant)
            await asyncio.sleep(0.005)
        return total

    results = await gather(*(writer(w) for w in range(8)), sealer(), sealer())
    assert not [r for r in results if isinstance(r, BaseException)], results
    sealed_during = results[-1] + results[-2]
    sealed_after = await run(seal, merchant)
    assert sealed_during + sealed_after == 80
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems
    assert report.entries_sealed == 80
    assert (await run(system_balances, merchant))[AccountKind.ISSUED] == -8 * sum(range(1, 11))


async def test_concurrent_refunds_earns_and_reserves_on_one_member(engine, run, merchant):
    """Clawbacks may take `available` below zero while reserves and earns race on the same
    member; balances, lots and holds must still add up."""
    first = await run(
        ops.earn,
        merchant,
        "alice",
        100,
        key="e0",
        description="d",
        source="t",
        expires_at=NOW + timedelta(days=10),
    )
    calls: list[tuple[str, Any]] = []
    for i in range(4):
        calls.append(
            (
                "refund",
                run(
                    ops.take_back,
                    merchant,
                    first.entry_id,
                    20,
                    key=f"refund-{i}",
                    description="refund",
                    source="t",
                ),
            )
        )
        calls.append(
            (
                "refund",
                run(
                    ops.take_back,
                    merchant,
                    first.entry_id,
                    20,
                    key=f"refund-{i}",
                    description="refund (retry)",
                    source="t",
                ),
            )
        )
    for i in range(10):
        calls.append(
            (
                "earn",
                run(
                    ops.earn,
                    merchant,
                    "alice",
                    7,
                    key=f"e{i + 1}",
                    description="d",
                    source="t",
                    expires_at=NOW + timedelta(days=i + 1),
                ),
            )
        )
    for i in range(8):
        calls.append(
            (
                "reserve",
                run(
                    ops.reserve,
                    merchant,
                    "alice",
                    25,
                    key=f"r{i}",
                    description="d",
                    source="t",
                    now=NOW,
                    timeout_s=600,
                ),
            )
        )
    results = await gather(*(c[1] for c in calls))
    unexpected = [
        (kind, r)
        for (kind, _), r in zip(calls, results, strict=True)
        if isinstance(r, BaseException)
        and not (kind == "reserve" and isinstance(r, InsufficientPoints))
    ]
    assert not unexpected, unexpected
    holds = [
        r
        for (kind, _), r in zip(calls, results, strict=True)
        if kind == "reserve" and not isinstance(r, BaseException)
    ]
    refunds = await count(
        engine,
        "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1 AND kind = 'clawback'",
        merchant,
    )
    assert refunds == 4  # each refund key once, however often it was sent

    bal = await run(member_balances, merchant, "alice")
    assert bal.reserved_points == 25 * len(holds)
    assert bal.available_points + bal.reserved_points == 100 + 70 - 80
    await assert_verifies(engine, run, merchant)

    # void every other hold, capture the rest, concurrently: still consistent
    closes = [
        run(ops.void if n % 2 else ops.capture, merchant, h.entry_id, description="d")
        for n, h in enumerate(holds)
    ]
    assert not [r for r in await gather(*closes) if isinstance(r, BaseException)]
    bal = await run(member_balances, merchant, "alice")
    captured = 25 * len(holds[::2])
    assert (bal.reserved_points, bal.available_points) == (0, 90 - captured)
    assert (await run(system_balances, merchant))[AccountKind.REDEEMED] == captured
    await assert_verifies(engine, run, merchant)


async def test_concurrent_batches_with_keys_in_opposite_orders(engine, run, merchant):
    """Racing batches that share keys in opposite orders may deadlock on the key index; the
    retries resolve it and every key is posted once."""
    forward = [
        ops.earn_entry(merchant, f"u{i % 3}", 1 + i, key=f"k{i}", description="d", source="t")
        for i in range(12)
    ]
    backward = forward[::-1]
    results = await gather(*(run(post_entries, forward if n % 2 else backward) for n in range(20)))
    ok, failed = split(results)
    assert not failed, failed
    ids = {e.idempotency_key: e.entry_id for r in ok for e in r}
    assert len(ids) == 12
    assert all(ids[e.idempotency_key] == e.entry_id for r in ok for e in r)
    assert sum(not e.replayed for r in ok for e in r) == 12
    assert (
        await count(engine, "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1", merchant)
        == 12
    )
    assert await run(outstanding_liability, merchant) == sum(range(1, 13))
    await assert_verifies(engine, run, merchant)


async def test_concurrent_earns_settle_a_clawback_debt_once(engine, run, merchant):
    """alice owes 70 after a refund; 20 racing earns of 7 must settle the debt first, so her
    lots end up holding exactly the 70 points her balance shows."""
    first = await run(ops.earn, merchant, "alice", 100, key="e0", description="d", source="t")
    await run(
        ops.take_back, merchant, first.entry_id, 170, key="refund", description="d", source="t"
    )
    assert (await run(member_balances, merchant, "alice")).available_points == -70
    results = await gather(
        *(
            run(ops.earn, merchant, "alice", 7, key=f"e{i + 1}", description="d", source="t")
            for i in range(20)
        )
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert (await run(member_balances, merchant, "alice")).available_points == 70
    async with db.connection(engine) as pg:
        lots = await pg.fetchval(
            "SELECT sum(available_points) FROM ledger_lots WHERE merchant_id = $1", merchant
        )
    assert lots == 70
    await assert_verifies(engine, run, merchant)
    # and the 70 are spendable, no more
    await run(
        ops.reserve,
        merchant,
        "alice",
        70,
        key="r",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await assert_verifies(engine, run, merchant)
