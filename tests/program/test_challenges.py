"""Challenges: progress rules at their boundaries, then completion through the service."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.ledger import member_balances, member_history
from pointguard.program.apply import apply_event
from pointguard.program.challenges.completions import member_challenges
from pointguard.program.challenges.rules import (
    Activity,
    challenge_bonus_key,
    challenge_progress,
    progress_lapses_at,
)
from pointguard.program.document.schema import Challenge
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed, OrderCancelled, OrderLine, OrderPaid

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

AT = datetime(2026, 6, 30, 12, tzinfo=UTC)  # a Tuesday
DAY = timedelta(days=1)


def challenge(goal, target, window_days=30):
    return Challenge(
        id="c",
        name="C",
        goal=goal,
        target=target,
        window_days=window_days,
        bonus_points=100,
        badge="B",
    )


def order(at, amount=1000):
    return Activity(at, "order", amount)


@pytest.mark.parametrize(
    ("goal", "target", "activity", "expected"),
    [
        pytest.param(
            "orders",
            3,
            [order(AT - 29 * DAY), order(AT - DAY), order(AT)],
            3,
            id="three-orders-inside-the-window",
        ),
        pytest.param(
            "orders",
            3,
            [order(AT - 30 * DAY), order(AT - DAY), order(AT)],
            2,
            id="window-start-is-excluded",
        ),
        pytest.param(
            "spend_minor",
            5000,
            [order(AT - DAY, 2500), order(AT, 2500)],
            5000,
            id="spend-reached-exactly",
        ),
        pytest.param(
            "reviews", 2, [Activity(AT, "review"), order(AT)], 1, id="reviews-count-reviews-only"
        ),
        pytest.param(
            "streak_weeks",
            3,
            [order(AT - 14 * DAY), order(AT - 7 * DAY), order(AT)],
            3,
            id="three-weeks-running",
        ),
        pytest.param(
            "streak_weeks",
            3,
            [order(AT - 21 * DAY), order(AT - 7 * DAY), order(AT)],
            2,
            id="a-week-missed-breaks-the-streak",
        ),
        pytest.param(
            "streak_weeks",
            2,
            [order(AT - DAY), order(AT)],  # Monday and Tuesday
            1,
            id="two-orders-in-one-week-are-one-week",
        ),
        pytest.param(
            "streak_months",
            2,
            [order(datetime(2026, 5, 31, tzinfo=UTC)), order(AT)],
            2,
            id="months-running",
        ),
    ],
)
def test_progress(goal, target, activity, expected):
    progress = challenge_progress(challenge(goal, target), activity, AT)
    assert progress.progress == expected
    assert progress.completed == (expected >= target)


@pytest.mark.parametrize(
    ("goal", "target", "activity", "expected"),
    [
        pytest.param(
            "orders", 3, [order(AT - 20 * DAY), order(AT)], AT + 10 * DAY, id="oldest-leaves"
        ),
        pytest.param(
            "spend_minor",
            5000,
            [order(AT - 25 * DAY, 0), order(AT - 5 * DAY, 100)],
            AT + 25 * DAY,
            id="an-order-of-no-spend-counts-for-nothing",
        ),
        pytest.param("reviews", 2, [order(AT)], None, id="nothing-counted"),
        pytest.param("orders", 1, [order(AT)], None, id="completed"),
        pytest.param(
            "streak_weeks",
            3,
            [order(AT)],  # Tuesday 2026-06-30: the streak lives through the next week
            datetime(2026, 7, 13, tzinfo=UTC),
            id="streak-through-next-week",
        ),
        pytest.param(
            "streak_months", 3, [order(AT)], datetime(2026, 8, 1, tzinfo=UTC), id="next-month"
        ),
    ],
)
def test_when_progress_starts_to_fall(goal, target, activity, expected):
    assert progress_lapses_at(challenge(goal, target), activity, AT) == expected


PROGRAM = """
name = "Challenges"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[[actions]]
event = "review.published"
points = 10
description = "Thanks for your review"
[[challenges]]
id = "three-orders"
name = "Three orders in a month"
goal = "orders"
target = 3
window_days = 30
bonus_points = 300
badge = "Regular"
[[challenges]]
id = "critic"
name = "Two reviews"
goal = "reviews"
target = 2
window_days = 60
bonus_points = 50
badge = "Critic"
"""


def paid(n, at):
    return OrderPaid(
        event_id=f"w{n}",
        member_id="ann",
        occurred_at=at,
        order_id=str(n),
        currency="EUR",
        lines=[OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=1000)],
    )


async def test_completing_challenges_pays_once_and_awards_badges(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=AT - 100 * DAY)
    for n, days_ago in enumerate([20, 10]):
        await run(apply_event, merchant, paid(n, AT - days_ago * DAY))
    third = await run(apply_event, merchant, paid(2, AT))
    assert [e.description for e in third.entries] == [
        "10 points for order #2",
        "300 bonus points: 'Three orders in a month' completed, badge 'Regular'",
    ]
    fourth = await run(apply_event, merchant, paid(3, AT + DAY))
    assert len(fourth.entries) == 1  # completed once only
    for n in range(2):
        await run(
            apply_event,
            merchant,
            ActionPerformed(
                event_id=f"r{n}",
                member_id="ann",
                occurred_at=AT + n * DAY,
                action="review.published",
            ),
        )
    progress = await run(member_challenges, merchant, "ann", AT + 2 * DAY)
    assert [
        (c.challenge.id, c.progress.completed, c.completed_at is not None) for c in progress
    ] == [
        ("three-orders", True, True),
        ("critic", True, True),
    ]
    balances = await run(member_balances, merchant, "ann")
    # Reviews and their challenge bonus are available at once; the orders' points and the
    # bonus an order won wait out the return window.
    assert (balances.available_points, balances.pending_points) == (20 + 50, 40 + 300)
    history = await run(member_history, merchant, "ann", limit=3)
    assert history.entries[0].description == (
        "50 bonus points: 'Two reviews' completed, badge 'Critic'"
    )


async def test_returning_the_orders_that_completed_a_challenge_takes_its_bonus_back(
    engine, run, merchant
):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=AT - 100 * DAY)
    for n, days_ago in enumerate([20, 10, 0]):
        await run(apply_event, merchant, paid(n, AT - days_ago * DAY))
    assert (await run(member_balances, merchant, "ann")).pending_points == 30 + 300

    cancelled = await run(
        apply_event,
        merchant,
        OrderCancelled(event_id="c1", member_id="ann", occurred_at=AT + DAY, order_id="1"),
    )
    assert [e.description for e in cancelled.entries] == [
        "10 points back: order #1 was cancelled",
        "300 bonus points back: 'Three orders in a month' is no longer completed after a return",
    ]
    assert (await run(member_balances, merchant, "ann")).pending_points == 20
    progress = await run(member_challenges, merchant, "ann", AT + DAY)
    assert next((c.challenge.id, c.progress.progress, c.completed_at) for c in progress) == (
        "three-orders",
        2,
        None,
    )
    # Its progress falls when the oldest order kept (order #0, 20 days before AT) leaves the
    # 30-day window.
    assert progress[0].lapses_at == AT - 20 * DAY + 30 * DAY
    async with db.connection(engine) as pg:
        events = await pg.fetch(
            "SELECT event_type FROM outbox WHERE merchant_id = $1 AND event_type LIKE"
            " 'challenge.%' ORDER BY outbox_id",
            merchant,
        )
    assert [r["event_type"] for r in events] == ["challenge.completed", "challenge.revoked"]

    # A returned order counts for nothing, but buying again completes it again, with a new
    # bonus; a later return that leaves it completed takes nothing more back.
    again = await run(apply_event, merchant, paid(4, AT + 2 * DAY))
    assert again.entries[-1].description == (
        "300 bonus points: 'Three orders in a month' completed, badge 'Regular'"
    )
    assert again.entries[-1].idempotency_key == challenge_bonus_key("three-orders", "ann", 1)
    await run(apply_event, merchant, paid(5, AT + 3 * DAY))
    late = await run(
        apply_event,
        merchant,
        OrderCancelled(event_id="c5", member_id="ann", occurred_at=AT + 4 * DAY, order_id="5"),
    )
    assert len(late.entries) == 1
    assert (await run(member_balances, merchant, "ann")).pending_points == 20 + 10 + 300
