"""One upkeep pass runs the ledger's jobs and the program's tier reviews, for the merchants
with work due only: each kind of due work makes its merchant due, just when it is due, and a
merchant with nothing due is not visited."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.config import load_settings
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import MaintenanceCounts, seal_all
from pointguard.program.apply import apply_event
from pointguard.program.dates import add_months
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid
from pointguard.program.expiry import send_expiry_reminders
from pointguard.upkeep import (
    TRY_LOCK_UPKEEP,
    UNLOCK_UPKEEP,
    exclusive_upkeep_pass,
    merchants_due,
    upkeep_pass,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

SETTINGS = load_settings({})
T0 = datetime(2026, 1, 5, tzinfo=UTC)
PROGRAM = """
name = "Upkeep"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[tiers]
grace_days = 0
[[tiers.levels]]
name = "Member"
threshold = 0
[[tiers.levels]]
name = "VIP"
threshold = 10000
"""


def visited(done: dict[str, object], merchant_id: str) -> bool:
    """Did the pass that returned `done` run any of the merchant's jobs?"""
    return any(key == merchant_id or key.startswith(f"{merchant_id} ") for key in done)


def order(event_id: str, at: datetime, amount_minor: int = 20000) -> OrderPaid:
    return OrderPaid(
        event_id=event_id,
        member_id="ann",
        occurred_at=at,
        order_id=event_id,
        currency="EUR",
        lines=[
            OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=amount_minor)
        ],
    )


async def test_upkeep_releases_seals_and_reviews_tiers(engine, run, merchant):
    t0 = T0
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=t0)
    await run(apply_event, merchant, order("w1", t0))
    done = await upkeep_pass(engine, now=t0 + timedelta(days=370))  # before the lot expires
    balances = await run(member_balances, merchant, "ann")
    assert (balances.available_points, balances.pending_points) == (200, 0)
    assert done[merchant].released == 1 and done[merchant].sealed == 2
    assert done[f"{merchant} tiers changed"] == 1  # VIP lapsed a year after the order
    async with db.connection(engine) as pg:
        events = await pg.fetch(
            "SELECT event_type, payload->>'points' AS points FROM outbox"
            " WHERE merchant_id = $1 ORDER BY outbox_id",
            merchant,
        )
    # the storefront hears of the release, in the release's transaction (and is reminded that
    # the points expire in a month)
    assert sorted((e["event_type"], e["points"] or "") for e in events) == [
        ("points.expiring", "200"),
        ("points.pending", "200"),
        ("points.released", "200"),
        ("tier.changed", ""),  # up to VIP with the order
        ("tier.changed", ""),  # and down again a year later
    ]


async def test_one_process_at_a_time_runs_the_upkeep(engine):
    async with db.connection(engine) as other_process:
        assert await other_process.fetchval(TRY_LOCK_UPKEEP)
        try:
            assert (
                await exclusive_upkeep_pass(engine, settings=SETTINGS) is None
            )  # busy elsewhere: skipped
        finally:
            await other_process.execute(UNLOCK_UPKEEP)
    assert await exclusive_upkeep_pass(engine, settings=SETTINGS) is not None
    async with db.connection(engine) as pg:  # and the lock was let go after the pass
        assert await pg.fetchval(TRY_LOCK_UPKEEP)
        await pg.execute(UNLOCK_UPKEEP)


async def test_a_pass_for_one_merchant_leaves_the_others_alone(engine, run, merchant):
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    other = f"{merchant}-other"
    for shop in (merchant, other):
        await run(save_program, shop, parse_program(PROGRAM), effective_from=t0)
        await run(apply_event, shop, order("w1", t0))
    done = await upkeep_pass(engine, now=t0 + timedelta(days=30), merchant_id=merchant)
    assert merchant in done
    assert all(key == merchant or key.startswith(f"{merchant} ") for key in done)
    assert (await run(member_balances, merchant, "ann")).pending_points == 0
    assert (await run(member_balances, other, "ann")).pending_points == 200  # untouched


async def due_parts(engine, merchant_id: str, now: datetime, settings=SETTINGS) -> set[str]:
    """The parts of the pass due for the merchant at `now`, as the statement of every merchant
    finds them."""
    async with db.connection(engine) as pg:
        rows = await merchants_due(pg, now, settings)
    return {
        part
        for row in rows
        if row["merchant_id"] == merchant_id
        for part in row
        if row[part] is True
    }


async def earn(run, merchant_id: str, key: str = "e", **lot: datetime):
    """100 points earned by ann; `lot`: the earn's `release_at` or `expires_at`."""
    return await run(
        ops.earn, merchant_id, "ann", 100, key=key, description=key, source="test", **lot
    )


async def reservation_timing_out(run, merchant_id: str) -> None:
    await earn(run, merchant_id)
    await run(
        ops.reserve,
        merchant_id,
        "ann",
        50,
        key="r",
        description="r",
        source="test",
        now=T0,
        timeout_s=3600,
    )


async def release_coming(run, merchant_id: str) -> None:
    await earn(run, merchant_id, release_at=T0 + timedelta(days=14))


async def lot_expiring(run, merchant_id: str) -> None:
    await earn(run, merchant_id, expires_at=T0 + timedelta(days=10))


async def tier_review_coming(run, merchant_id: str) -> None:
    """VIP with an order, reviewed a year later; nothing expires, to keep reminders away."""
    program = PROGRAM + '[expiry]\nmode = "never"\n'
    await run(save_program, merchant_id, parse_program(program), effective_from=T0)
    await run(apply_event, merchant_id, order("w1", T0))
    await run(ops.release_due, merchant_id, now=T0 + timedelta(days=14))


# Each kind of due work: how to make it, when it is not due yet and when it is, and the part
# of the pass it makes due. Each setup is sealed after, so the unsealed entries it posted make
# nothing due.
DUE_WORK = {
    "reservation timed out": (  # and its capture grace over
        reservation_timing_out,
        timedelta(minutes=59, seconds=ops.CAPTURE_GRACE_S),
        timedelta(hours=1, seconds=ops.CAPTURE_GRACE_S),
        "ledger",
    ),
    "release come": (release_coming, timedelta(days=13), timedelta(days=14), "ledger"),
    "lot expired": (lot_expiring, timedelta(days=9, hours=23), timedelta(days=10), "ledger"),
    "tier review come": (tier_review_coming, timedelta(days=300), timedelta(days=366), "program"),
}


@pytest.mark.parametrize("case", DUE_WORK)
async def test_each_kind_of_work_makes_its_merchant_due_when_it_is_due(engine, run, merchant, case):
    setup, not_yet, due, part = DUE_WORK[case]
    await setup(run, merchant)
    await seal_all(engine, merchant)
    assert await due_parts(engine, merchant, T0 + not_yet) == set()
    assert await due_parts(engine, merchant, T0 + due) == {part}


async def test_unsealed_entries_make_the_ledger_due(engine, run, merchant):
    await earn(run, merchant)
    assert await due_parts(engine, merchant, T0) == {"ledger"}
    await seal_all(engine, merchant)
    assert await due_parts(engine, merchant, T0) == set()


async def test_a_held_release_is_not_due(engine, run, merchant):
    entry = await earn(run, merchant, release_at=T0)
    await run(ops.set_release_held, merchant, entry.entry_id, held=True)
    await seal_all(engine, merchant)
    assert await due_parts(engine, merchant, T0 + timedelta(days=1)) == set()


async def test_lot_reminders_are_due_once_per_lead_for_each_members_first_expiry(
    engine, run, merchant
):
    program = PROGRAM.replace("[tiers]", "[expiry]\nreminder_days = [30, 7]\n[tiers]")
    await run(save_program, merchant, parse_program(program), effective_from=T0)
    for key, days in (("first", 100), ("second", 101)):
        await earn(run, merchant, key, expires_at=T0 + timedelta(days=days))
    await seal_all(engine, merchant)
    assert await due_parts(engine, merchant, T0 + timedelta(days=69, hours=23)) == set()
    thirty_before = T0 + timedelta(days=70)
    assert await due_parts(engine, merchant, thirty_before) == {"program"}
    assert await run(send_expiry_reminders, merchant, now=thirty_before) == 1
    # the second lot is within 30 days too, but a reminder names the first expiry only
    assert await due_parts(engine, merchant, T0 + timedelta(days=92)) == set()
    assert await due_parts(engine, merchant, T0 + timedelta(days=93)) == {"program"}


async def test_inactivity_reminders_and_expiry_are_due_in_their_time(engine, run, merchant):
    program = PROGRAM.replace(
        "[tiers]", '[expiry]\nmode = "inactivity"\nmonths = 2\nreminder_days = [30]\n[tiers]'
    )
    t0 = datetime(2026, 1, 31, 12, tzinfo=UTC)  # two months on: 31 March, not 3 April
    await run(save_program, merchant, parse_program(program), effective_from=t0)
    await run(apply_event, merchant, order("w1", t0, amount_minor=500))  # no tier review
    await run(ops.release_due, merchant, now=t0 + timedelta(days=14))
    await seal_all(engine, merchant)
    expires_at = add_months(t0, 2)
    reminder_at = expires_at - timedelta(days=30)
    assert await due_parts(engine, merchant, reminder_at - timedelta(seconds=1)) == set()
    assert await due_parts(engine, merchant, reminder_at) == {"program"}
    assert await run(send_expiry_reminders, merchant, now=reminder_at) == 1
    assert await due_parts(engine, merchant, expires_at - timedelta(seconds=1)) == set()
    assert await due_parts(engine, merchant, expires_at) == {"program"}
    done = await upkeep_pass(engine, expires_at, settings=SETTINGS, merchant_id=merchant)
    assert done[f"{merchant} inactivity points expired"] == 5
    assert await due_parts(engine, merchant, expires_at) == {"ledger"}  # the expiry to seal


async def test_a_merchant_with_nothing_due_is_not_visited(engine, run, merchant):
    await release_coming(run, merchant)
    await seal_all(engine, merchant)
    assert not visited(
        await upkeep_pass(engine, T0 + timedelta(days=1), settings=SETTINGS), merchant
    )
    done = await upkeep_pass(
        engine, T0 + timedelta(days=14), settings=SETTINGS, merchant_id=merchant
    )
    assert done == {merchant: MaintenanceCounts(released=1, sealed=1)}  # the ledger's jobs only
