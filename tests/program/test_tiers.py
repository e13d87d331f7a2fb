"""Tiers: pure decisions at their boundaries, then through the service and the database."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid, OrderRefunded, RefundedLine
from pointguard.program.tiers.review import review_tiers
from pointguard.program.tiers.rules import (
    TierStatus,
    decide_tier,
    qualification_window,
    tier_progress,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

TOML = """
name = "Tiered"
currency = "EUR"
return_window_days = 0
[earning]
points_per_major_unit = "1"
[tiers]
basis = "spend"
window = "{window}"
grace_days = 30
[[tiers.levels]]
name = "Bronze"
threshold = 0
[[tiers.levels]]
name = "Silver"
threshold = 50000
multiplier = "1.5"
[[tiers.levels]]
name = "Gold"
threshold = 150000
multiplier = "2"
"""
ROLLING = parse_program(TOML.format(window="rolling_12_months"))
CALENDAR = parse_program(TOML.format(window="calendar_year"))
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
REVIEW = datetime(2027, 3, 10, 12, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("status", "now_amount", "period_amount", "at", "expected", "reason"),
    [
        pytest.param(TierStatus(), 0, 0, T0, TierStatus("Bronze", REVIEW), "upgrade", id="join"),
        pytest.param(
            TierStatus("Bronze", REVIEW),
            49999,
            0,
            T0,
            TierStatus("Bronze", REVIEW),
            "",
            id="one-cent-short",
        ),
        pytest.param(
            TierStatus("Bronze", REVIEW),
            50000,
            0,
            T0,
            TierStatus("Silver", REVIEW),
            "upgrade",
            id="threshold-exactly",
        ),
        pytest.param(
            TierStatus("Bronze", REVIEW),
            150000,
            0,
            T0,
            TierStatus("Gold", REVIEW),
            "upgrade",
            id="skip-a-tier",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            0,
            REVIEW - timedelta(microseconds=1),
            TierStatus("Gold", REVIEW),
            "",
            id="before-review-keeps",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            150000,
            REVIEW,
            TierStatus("Gold", datetime(2028, 3, 10, 12, tzinfo=UTC)),
            "requalified",
            id="period-requalifies",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            60000,
            REVIEW,
            TierStatus("Gold", REVIEW),
            "grace",
            id="review-failed-grace-starts",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            60000,
            60000,
            REVIEW + 30 * DAY - timedelta(microseconds=1),
            TierStatus("Gold", REVIEW),
            "grace",
            id="last-moment-of-grace",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            60000,
            60000,
            REVIEW + 30 * DAY,
            TierStatus("Silver", datetime(2028, 4, 9, 12, tzinfo=UTC)),  # 12 months on
            "downgrade",
            id="grace-over-downgrade",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            150000,
            0,
            REVIEW + 10 * DAY,
            TierStatus("Gold", datetime(2028, 3, 10, 12, tzinfo=UTC)),
            "requalified",
            id="requalified-in-grace",
        ),
    ],
)
def test_tier_decisions(status, now_amount, period_amount, at, expected, reason):
    decision = decide_tier(
        ROLLING, status, now_amount=now_amount, period_amount=period_amount, at=at
    )
    assert (decision.status, decision.reason) == (expected, reason)


def test_calendar_windows_and_reviews():
    just_before = timedelta(microseconds=1)
    new_year = datetime(2027, 1, 1, tzinfo=UTC)
    assert qualification_window(CALENDAR.tiers, T0) == (
        datetime(2026, 1, 1, tzinfo=UTC) - just_before,
        T0,
    )
    assert qualification_window(CALENDAR.tiers, new_year) == (
        datetime(2026, 1, 1, tzinfo=UTC) - just_before,
        new_year,
    )
    assert qualification_window(ROLLING.tiers, REVIEW) == (T0, REVIEW)
    decision = decide_tier(CALENDAR, TierStatus(), now_amount=60000, period_amount=0, at=T0)
    assert decision.status == TierStatus("Silver", new_year)


def test_progress_to_the_next_tier():
    progress = tier_progress(ROLLING, TierStatus("Silver", REVIEW), 120000)
    assert (progress.next_tier, progress.amount_left, progress.review_at) == (
        "Gold",
        30000,
        REVIEW,
    )
    assert progress.benefits is not None and progress.benefits.multiplier == 1.5
    top = tier_progress(ROLLING, TierStatus("Gold", REVIEW), 999999)
    assert (top.next_tier, top.amount_left) == (None, 0)


def paid(event_id, order_id, at, amount_minor):
    return OrderPaid(
        event_id=event_id,
        member_id="ann",
        occurred_at=at,
        order_id=order_id,
        currency="EUR",
        lines=[
            OrderLine(
                line_id="1", sku="S", category="bags", quantity=1, unit_price_minor=amount_minor
            )
        ],
    )


async def member_tier(engine, merchant):
    async with db.connection(engine) as pg:
        return await pg.fetchrow(
            "SELECT tier, tier_review_at FROM program_members WHERE merchant_id = $1", merchant
        )


async def tier_events(engine, merchant):
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT payload->>'from' AS f, payload->>'to' AS t FROM outbox"
            " WHERE merchant_id = $1 AND event_type = 'tier.changed' ORDER BY outbox_id",
            merchant,
        )
    return [(r["f"], r["t"]) for r in rows]


async def test_upgrade_at_once_multiplier_from_the_next_order_downgrade_after_grace(
    engine, run, merchant
):
    await run(save_program, merchant, ROLLING, effective_from=T0 - 400 * DAY)
    first = await run(apply_event, merchant, paid("w1", "1", T0, 60000))
    assert first.entries[0].description == "600 points for order #1"  # earned as Bronze
    assert tuple(await member_tier(engine, merchant)) == ("Silver", REVIEW)
    second = await run(apply_event, merchant, paid("w2", "2", T0 + DAY, 10000))
    assert second.entries[0].description == "150 points for order #2"  # Silver's 1.5x
    # A refund below the threshold does not downgrade before the review ...
    refund = OrderRefunded(
        event_id="w3",
        member_id="ann",
        occurred_at=T0 + 2 * DAY,
        order_id="1",
        lines=[RefundedLine(line_id="1", quantity=1)],
    )
    await run(apply_event, merchant, refund)
    assert (await member_tier(engine, merchant))["tier"] == "Silver"
    # ... nor during the grace after it; after the grace, down to what the spend supports.
    assert await run(review_tiers, merchant, now=REVIEW + 29 * DAY) == 0
    assert (await member_tier(engine, merchant))["tier"] == "Silver"
    assert await run(review_tiers, merchant, now=REVIEW + 30 * DAY) == 1
    assert (await member_tier(engine, merchant))["tier"] == "Bronze"
    assert await tier_events(engine, merchant) == [(None, "Silver"), ("Silver", "Bronze")]
