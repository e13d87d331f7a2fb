"""Use cases beyond the happy path: expiry on the day, reminders, jobs, debt, history pages."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.errors import InvalidReference
from pointguard.ledger import (
    AccountKind,
    expiring_within,
    member_balances,
    member_history,
    outstanding_liability,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
DAY = timedelta(days=1)


async def earn(run, merchant, member, points, key, **kwargs):
    return await run(
        ops.earn,
        merchant,
        member,
        points,
        key=key,
        description=f"{points} points",
        source="test",
        **kwargs,
    )


async def balances(run, merchant, member):
    b = await run(member_balances, merchant, member)
    return b.available_points, b.pending_points, b.reserved_points


async def assert_verified(engine, run, merchant):
    await run(seal, merchant)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems


async def test_expiry_takes_lots_due_on_the_day_and_not_a_second_earlier(engine, run, merchant):
    await earn(run, merchant, "ann", 30, "a", expires_at=NOW + 10 * DAY)
    await earn(run, merchant, "ann", 50, "b", expires_at=NOW + 20 * DAY)
    assert await run(ops.expire_due, merchant, now=NOW + 10 * DAY - timedelta(seconds=1)) == 0
    assert await run(ops.expire_due, merchant, now=NOW + 10 * DAY) == 30
    assert await balances(run, merchant, "ann") == (50, 0, 0)
    assert (await run(system_balances, merchant))[AccountKind.EXPIRED] == 30
    assert await run(ops.expire_due, merchant, now=NOW + 10 * DAY) == 0  # nothing twice
    await assert_verified(engine, run, merchant)


async def test_spends_take_the_earliest_expiring_points_first(engine, run, merchant):
    await earn(run, merchant, "ann", 40, "late", expires_at=NOW + 90 * DAY)
    await earn(run, merchant, "ann", 40, "soon", expires_at=NOW + 30 * DAY)
    await earn(run, merchant, "ann", 40, "never")
    hold = await run(
        ops.reserve,
        merchant,
        "ann",
        50,
        key="r",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await run(ops.capture, merchant, hold.entry_id, description="spent")
    # "soon" (40) and 10 of "late" were spent: at day 30 nothing is left to expire ...
    assert await run(ops.expire_due, merchant, now=NOW + 30 * DAY) == 0
    # ... and at day 90 the remaining 30 of "late" expire; "never" stays.
    assert await run(ops.expire_due, merchant, now=NOW + 90 * DAY) == 30
    assert await balances(run, merchant, "ann") == (40, 0, 0)
    await assert_verified(engine, run, merchant)


async def test_void_returns_points_to_their_lots_with_their_expiry(engine, run, merchant):
    await earn(run, merchant, "ann", 40, "soon", expires_at=NOW + 30 * DAY)
    hold = await run(
        ops.reserve,
        merchant,
        "ann",
        40,
        key="r",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await run(ops.void, merchant, hold.entry_id, description="cancelled")
    assert await run(ops.expire_due, merchant, now=NOW + 30 * DAY) == 40
    await assert_verified(engine, run, merchant)


async def test_expiring_within_lists_reminders_per_member(run, merchant):
    await earn(run, merchant, "ann", 30, "a1", expires_at=NOW + 3 * DAY)
    await earn(run, merchant, "ann", 20, "a2", expires_at=NOW + 6 * DAY)
    await earn(run, merchant, "bob", 10, "b1", expires_at=NOW + 8 * DAY)
    await earn(run, merchant, "cat", 10, "c1")
    soon = await run(expiring_within, merchant, now=NOW, days=7)
    assert [(e.member_id, e.points, e.first_expires_at) for e in soon] == [
        ("ann", 50, NOW + 3 * DAY)
    ]
    assert [e.member_id for e in await run(expiring_within, merchant, now=NOW, days=8)] == [
        "ann",
        "bob",
    ]
    only_bob = await run(expiring_within, merchant, now=NOW, days=30, member_id="bob")
    assert [(e.member_id, e.points) for e in only_bob] == [("bob", 10)]


async def test_release_due_respects_release_time_and_holds(engine, run, merchant):
    held = await earn(run, merchant, "ann", 100, "o1", release_at=NOW + 14 * DAY)
    await earn(run, merchant, "ann", 20, "o2", release_at=NOW + 14 * DAY)
    await earn(run, merchant, "ann", 5, "o3", release_at=NOW + 15 * DAY)
    await run(ops.set_release_held, merchant, held.entry_id, held=True)
    assert await run(ops.release_due, merchant, now=NOW + 14 * DAY - timedelta(seconds=1)) == []
    assert len(await run(ops.release_due, merchant, now=NOW + 14 * DAY)) == 1
    assert await balances(run, merchant, "ann") == (20, 105, 0)
    await run(ops.set_release_held, merchant, held.entry_id, held=False)
    assert len(await run(ops.release_due, merchant, now=NOW + 15 * DAY)) == 2
    assert await balances(run, merchant, "ann") == (125, 0, 0)
    again = await run(ops.release, merchant, held.entry_id)  # released already: the same entry
    assert again.replayed and again.settles == held.entry_id
    await assert_verified(engine, run, merchant)


async def test_timed_out_reservations_are_voided(engine, run, merchant):
    await earn(run, merchant, "ann", 100, "o1")
    short = await run(
        ops.reserve,
        merchant,
        "ann",
        30,
        key="r1",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await run(
        ops.reserve,
        merchant,
        "ann",
        30,
        key="r2",
        description="d",
        source="t",
        now=NOW,
        timeout_s=600,
    )
    grace = timedelta(seconds=ops.CAPTURE_GRACE_S)
    assert await run(ops.void_timed_out, merchant, now=NOW + timedelta(seconds=60)) == 0
    assert await run(ops.void_timed_out, merchant, now=NOW + timedelta(seconds=60) + grace) == 1
    assert await balances(run, merchant, "ann") == (70, 0, 30)
    late = await run(ops.capture, merchant, short.entry_id, description="paid late")
    assert not late.replayed  # reserved again from available, then spent
    assert await balances(run, merchant, "ann") == (40, 0, 30)
    await assert_verified(engine, run, merchant)


async def test_refund_before_release_reverses_pending(engine, run, merchant):
    order = await earn(run, merchant, "ann", 120, "o1", release_at=NOW + 14 * DAY)
    taken = await run(
        ops.take_back,
        merchant,
        order.entry_id,
        50,
        key="refund-1",
        description="refund",
        source="t",
    )
    assert [e.kind for e in taken] == ["reversal"]
    assert await balances(run, merchant, "ann") == (0, 70, 0)
    await run(ops.release, merchant, order.entry_id)
    assert await balances(run, merchant, "ann") == (70, 0, 0)
    await assert_verified(engine, run, merchant)


async def test_clawback_after_release_can_go_negative_and_later_credits_settle_it(
    engine, run, merchant
):
    order = await earn(run, merchant, "ann", 100, "o1", release_at=NOW)
    await run(ops.release, merchant, order.entry_id)
    hold = await run(
        ops.reserve,
        merchant,
        "ann",
        80,
        key="r",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await run(ops.capture, merchant, hold.entry_id, description="spent")
    taken = await run(
        ops.take_back,
        merchant,
        order.entry_id,
        100,
        key="refund-1",
        description="order refunded",
        source="t",
    )
    assert [e.kind for e in taken] == ["clawback"]
    assert await balances(run, merchant, "ann") == (-80, 0, 0)
    assert await run(outstanding_liability, merchant) == -80  # visible, not hidden
    await earn(run, merchant, "ann", 50, "o2", expires_at=NOW + DAY)
    assert await balances(run, merchant, "ann") == (-30, 0, 0)
    # The 50 settled debt: there is nothing left in a lot to expire.
    assert await run(ops.expire_due, merchant, now=NOW + 2 * DAY) == 0
    await earn(run, merchant, "ann", 40, "o3")
    assert await balances(run, merchant, "ann") == (10, 0, 0)
    await assert_verified(engine, run, merchant)


async def test_forfeit_moves_pending_to_forfeited(engine, run, merchant):
    order = await earn(run, merchant, "ann", 60, "o1", release_at=NOW + DAY)
    await run(ops.forfeit, merchant, order.entry_id, description="fraud confirmed", source="review")
    assert await balances(run, merchant, "ann") == (0, 0, 0)
    assert (await run(system_balances, merchant))[AccountKind.FORFEITED] == 60
    with pytest.raises(InvalidReference, match="no pending points"):
        await run(ops.release, merchant, order.entry_id)
    await assert_verified(engine, run, merchant)


async def test_history_is_newest_first_in_pages(run, merchant):
    for i in range(7):
        await earn(run, merchant, "ann", i + 1, f"o{i}")
    await earn(run, merchant, "bob", 99, "other")
    seen = []
    cursor = None
    while True:
        page = await run(member_history, merchant, "ann", limit=3, before=cursor)
        seen.extend(e.description for e in page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"{i} points" for i in range(7, 0, -1)]


async def test_liability_equals_minus_the_system_accounts(run, merchant):
    await earn(run, merchant, "ann", 100, "o1")
    await earn(run, merchant, "bob", 40, "o2", release_at=NOW + DAY)
    hold = await run(
        ops.reserve,
        merchant,
        "ann",
        30,
        key="r",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    await run(ops.capture, merchant, hold.entry_id, description="spent")
    await run(
        ops.reserve,
        merchant,
        "ann",
        20,
        key="r2",
        description="d",
        source="t",
        now=NOW,
        timeout_s=60,
    )
    liability = await run(outstanding_liability, merchant)
    assert liability == 110
    assert -sum((await run(system_balances, merchant)).values()) == liability
    await run(seal, merchant)
    assert -sum((await run(system_balances, merchant)).values()) == liability
