"""Issue 9, item 4: a hold cannot expire under a checkout.

The upkeep voided a reservation the moment it timed out, and a capture of a voided hold was
refused, so a checkout paid just then kept both the discount and the points. Now the upkeep
waits `CAPTURE_GRACE_S` past the timeout, and a later capture of a voided hold reserves the
points again if they are there, else raises `ReservationLapsed`; the ledger stays balanced.
"""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.errors import ReservationLapsed
from pointguard.ledger import AccountKind, member_balances, system_balances
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import maintain_merchant
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import complete_redemption, redeem
from tests.program.test_redemption import PROGRAM  # rewards, five-off among them

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
TIMEOUT_S = 900
GRACE = timedelta(seconds=ops.CAPTURE_GRACE_S)
TIMED_OUT = NOW + timedelta(seconds=TIMEOUT_S)


async def funded(run, merchant, points=100):
    await run(ops.earn, merchant, "ann", points, key="e1", description="gift", source="t")


async def reserve(run, merchant, points=60, key="checkout-1"):
    hold = await run(
        ops.reserve,
        merchant,
        "ann",
        points,
        key=key,
        description="Checkout",
        source="t",
        now=NOW,
        timeout_s=TIMEOUT_S,
    )
    return hold.entry_id


async def balances(run, merchant):
    b = await run(member_balances, merchant, "ann")
    return b.available_points, b.reserved_points


async def assert_balanced(engine, run, merchant):
    await run(seal, merchant)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems


def test_the_grace_is_a_few_minutes():
    assert 60 <= ops.CAPTURE_GRACE_S <= 3600


async def test_capture_within_grace_works_even_after_the_upkeep_ran(engine, run, merchant):
    await funded(run, merchant)
    hold = await reserve(run, merchant)
    counts = await maintain_merchant(engine, merchant, TIMED_OUT + GRACE / 2)
    assert counts.voided == 0
    entry = await run(ops.capture, merchant, hold, description="Redeemed")
    assert not entry.replayed and entry.settles == hold
    assert await balances(run, merchant) == (40, 0)
    assert (await run(system_balances, merchant))[AccountKind.REDEEMED] == 60
    await assert_balanced(engine, run, merchant)


async def test_the_upkeep_voids_only_after_the_grace(engine, run, merchant):
    await funded(run, merchant)
    await reserve(run, merchant)
    assert await run(ops.void_timed_out, merchant, now=TIMED_OUT) == 0
    assert await run(ops.void_timed_out, merchant, now=TIMED_OUT + GRACE) == 1
    assert await balances(run, merchant) == (100, 0)


async def test_a_late_capture_of_a_voided_hold_reserves_again(engine, run, merchant):
    await funded(run, merchant)
    hold = await reserve(run, merchant)
    assert (await maintain_merchant(engine, merchant, TIMED_OUT + 2 * GRACE)).voided == 1
    entry = await run(ops.capture, merchant, hold, description="Redeemed")
    assert entry.kind == "capture" and not entry.replayed
    assert await balances(run, merchant) == (40, 0)
    again = await run(ops.capture, merchant, hold, description="Redeemed")
    assert again.replayed and again.entry_id == entry.entry_id
    assert (await run(system_balances, merchant))[AccountKind.REDEEMED] == 60
    await assert_balanced(engine, run, merchant)


async def test_a_late_capture_without_the_points_fails_loudly(engine, run, merchant):
    await funded(run, merchant)
    hold = await reserve(run, merchant)
    await run(ops.void, merchant, hold, description="Cancelled")
    spent = await reserve(run, merchant, 70, key="checkout-2")
    await run(ops.capture, merchant, spent, description="Spent elsewhere")
    with pytest.raises(ReservationLapsed) as info:
        await run(ops.capture, merchant, hold, description="Redeemed")
    assert (info.value.hold_id, info.value.available_points) == (hold, 30)
    assert await balances(run, merchant) == (30, 0)
    assert (await run(system_balances, merchant))[AccountKind.REDEEMED] == 70
    await assert_balanced(engine, run, merchant)


async def test_a_checkout_paid_after_its_redemption_timed_out_is_charged(engine, run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=NOW - 30 * GRACE)
    await funded(run, merchant, 1000)
    cart = Cart(subtotal_minor=5000)
    r = await run(redeem, merchant, "ann", "five-off", cart, key="c1", now=NOW)
    await maintain_merchant(engine, merchant, r.expires_at + 2 * GRACE)
    assert await balances(run, merchant) == (1000, 0)
    done = await run(complete_redemption, merchant, r.redemption_id)
    assert done.status == "captured"
    assert await balances(run, merchant) == (500, 0)
    await assert_balanced(engine, run, merchant)
