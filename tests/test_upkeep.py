"""One upkeep pass runs the ledger's jobs and the program's tier reviews."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.config import load_settings
from pointguard.ledger import member_balances
from pointguard.program.events import OrderLine, OrderPaid
from pointguard.program.service import apply_event
from pointguard.program.store import save_program
from pointguard.program.validation import parse_program
from pointguard.upkeep import (
    TRY_UPKEEP_LOCK,
    UPKEEP_UNLOCK,
    exclusive_upkeep_pass,
    upkeep_pass,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

SETTINGS = load_settings({})
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


async def test_upkeep_releases_seals_and_reviews_tiers(engine, run, merchant):
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=t0)
    await run(
        apply_event,
        merchant,
        OrderPaid(
            event_id="w1",
            member_id="ann",
            occurred_at=t0,
            order_id="1",
            currency="EUR",
            lines=[
                OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=20000)
            ],
        ),
    )
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
        assert await other_process.fetchval(TRY_UPKEEP_LOCK)
        try:
            assert (
                await exclusive_upkeep_pass(engine, settings=SETTINGS) is None
            )  # busy elsewhere: skipped
        finally:
            await other_process.execute(UPKEEP_UNLOCK)
    assert await exclusive_upkeep_pass(engine, settings=SETTINGS) is not None
    async with db.connection(engine) as pg:  # and the lock was let go after the pass
        assert await pg.fetchval(TRY_UPKEEP_LOCK)
        await pg.execute(UPKEEP_UNLOCK)


async def test_a_pass_for_one_merchant_leaves_the_others_alone(engine, run, merchant):
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    other = f"{merchant}-other"
    for shop in (merchant, other):
        await run(save_program, shop, parse_program(PROGRAM), effective_from=t0)
        await run(
            apply_event,
            shop,
            OrderPaid(
                event_id="w1",
                member_id="ann",
                occurred_at=t0,
                order_id="1",
                currency="EUR",
                lines=[
                    OrderLine(
                        line_id="1", sku="S", category="c", quantity=1, unit_price_minor=20000
                    )
                ],
            ),
        )
    done = await upkeep_pass(engine, now=t0 + timedelta(days=30), merchant_id=merchant)
    assert merchant in done and f"{merchant} tiers changed" in done
    assert all(key == merchant or key.startswith(f"{merchant} ") for key in done)
    assert (await run(member_balances, merchant, "ann")).pending_points == 0
    assert (await run(member_balances, other, "ann")).pending_points == 200  # untouched
