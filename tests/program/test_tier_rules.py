"""`tiers.rules` from plain values: thresholds, reviews, grace, the qualification windows at their
boundaries (rolling and calendar year), and the `tier.changed` events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pointguard.program.document.schema import Program
from pointguard.program.document.validate import parse_program
from pointguard.program.intents import OutboxEvent
from pointguard.program.tiers.rules import (
    TierDecision,
    TierStatus,
    decide_tier,
    next_review,
    qualification_window,
    tier_events,
    tier_progress,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

US = timedelta(microseconds=1)
DAY = timedelta(days=1)
SILVER, GOLD, PLATINUM = 50000, 150000, 400000


def program(window: str = "rolling_12_months", grace_days: int = 30, **tiers: Any) -> Program:
    """Silver, Gold and Platinum on spend (no tier below Silver)."""
    return parse_program(
        {
            "name": "Tiered",
            "currency": "EUR",
            "earning": {"points_per_major_unit": "1"},
            "tiers": {
                "window": window,
                "grace_days": grace_days,
                "levels": [
                    {"name": "Silver", "threshold": SILVER, "multiplier": "1.25"},
                    {"name": "Gold", "threshold": GOLD, "multiplier": "1.5"},
                    {"name": "Platinum", "threshold": PLATINUM, "multiplier": "2"},
                ],
                **tiers,
            },
        }
    )


ROLLING = program()
CALENDAR = program("calendar_year")
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
REVIEW = datetime(2027, 3, 10, 12, tzinfo=UTC)  # T0 + 12 months
NEXT_REVIEW = datetime(2028, 3, 10, 12, tzinfo=UTC)
GRACE_OVER = REVIEW + 30 * DAY
GRACE_OVER_REVIEW = datetime(2028, 4, 9, 12, tzinfo=UTC)  # 12 months after GRACE_OVER
NEW_YEAR_2027 = datetime(2027, 1, 1, tzinfo=UTC)
NEW_YEAR_2028 = datetime(2028, 1, 1, tzinfo=UTC)


def decide(
    program_: Program, status: TierStatus, now: int, period: int, at: datetime
) -> TierDecision:
    return decide_tier(program_, status, now_amount=now, period_amount=period, at=at)


@pytest.mark.parametrize(
    ("status", "now", "period", "at", "expected", "changed_from", "reason"),
    [
        # upgrades, at once, whenever the amount reaches a threshold
        pytest.param(TierStatus(), SILVER - 1, 0, T0, TierStatus(), None, "", id="below-first"),
        pytest.param(
            TierStatus(), SILVER, 0, T0, TierStatus("Silver", REVIEW), None, "upgrade", id="first"
        ),
        pytest.param(
            TierStatus("Silver", REVIEW),
            GOLD - 1,
            0,
            T0,
            TierStatus("Silver", REVIEW),
            None,
            "",
            id="one-below-gold",
        ),
        pytest.param(
            TierStatus("Silver", datetime(2026, 12, 1, tzinfo=UTC)),
            GOLD,
            0,
            T0,
            TierStatus("Gold", REVIEW),
            "Silver",
            "upgrade",
            id="gold-exactly-review-restarts",
        ),
        pytest.param(
            TierStatus(),
            PLATINUM,
            0,
            T0,
            TierStatus("Platinum", REVIEW),
            None,
            "upgrade",
            id="skips-tiers",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            PLATINUM,
            0,
            GRACE_OVER - US,
            TierStatus("Platinum", GRACE_OVER_REVIEW - US),
            "Gold",
            "upgrade",
            id="upgrade-in-grace",
        ),
        # the review: not before it is due
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            0,
            REVIEW - US,
            TierStatus("Gold", REVIEW),
            None,
            "",
            id="review-not-yet-due",
        ),
        pytest.param(
            TierStatus("Gold", None),
            0,
            0,
            REVIEW,
            TierStatus("Gold", None),
            None,
            "",
            id="no-review",
        ),
        # requalified by the period under review or by the window up to now
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            GOLD,
            REVIEW,
            TierStatus("Gold", NEXT_REVIEW),
            None,
            "requalified",
            id="period-requalifies",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            GOLD,
            0,
            REVIEW,
            TierStatus("Gold", NEXT_REVIEW),
            None,
            "requalified",
            id="now-requalifies",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            GOLD,
            0,
            GRACE_OVER - US,
            TierStatus("Gold", NEXT_REVIEW),
            None,
            "requalified",
            id="requalified-in-grace-from-the-review",
        ),
        # not requalified: grace, then down to what either amount reaches
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            GOLD - 1,
            REVIEW,
            TierStatus("Gold", REVIEW),
            None,
            "grace",
            id="one-below-grace-starts",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            SILVER,
            0,
            GRACE_OVER - US,
            TierStatus("Gold", REVIEW),
            None,
            "grace",
            id="last-microsecond-of-grace",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            SILVER,
            0,
            GRACE_OVER,
            TierStatus("Silver", GRACE_OVER_REVIEW),
            "Gold",
            "downgrade",
            id="grace-over-now",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            SILVER,
            GRACE_OVER,
            TierStatus("Silver", GRACE_OVER_REVIEW),
            "Gold",
            "downgrade",
            id="grace-over-period",
        ),
        pytest.param(
            TierStatus("Gold", REVIEW),
            0,
            0,
            GRACE_OVER,
            TierStatus(None, GRACE_OVER_REVIEW),
            "Gold",
            "downgrade",
            id="grace-over-no-tier",
        ),
    ],
)
def test_decide_tier_rolling(
    status: TierStatus,
    now: int,
    period: int,
    at: datetime,
    expected: TierStatus,
    changed_from: str | None,
    reason: str,
) -> None:
    decision = decide(ROLLING, status, now, period, at)
    assert decision == TierDecision(expected, changed_from, reason)
    assert decision.changed is (reason in ("upgrade", "downgrade"))


def test_no_grace_downgrades_at_the_review() -> None:
    decision = decide(program(grace_days=0), TierStatus("Gold", REVIEW), SILVER, 0, REVIEW)
    assert decision == TierDecision(TierStatus("Silver", NEXT_REVIEW), "Gold", "downgrade")


def test_a_program_without_tiers_decides_nothing() -> None:
    no_tiers = parse_program(
        {"name": "Flat", "currency": "EUR", "earning": {"points_per_major_unit": "1"}}
    )
    assert decide(no_tiers, TierStatus(), 10**9, 10**9, T0) == TierDecision(TierStatus())


@pytest.mark.parametrize(
    ("status", "now", "period", "at", "expected", "reason"),
    [
        pytest.param(
            TierStatus(), GOLD, 0, T0, TierStatus("Gold", NEW_YEAR_2027), "upgrade", id="upgrade"
        ),
        pytest.param(
            TierStatus(),
            GOLD,
            0,
            NEW_YEAR_2027 - US,
            TierStatus("Gold", NEW_YEAR_2027),
            "upgrade",
            id="upgrade-last-microsecond-of-year",
        ),
        pytest.param(
            TierStatus(),
            GOLD,
            0,
            NEW_YEAR_2027,
            TierStatus("Gold", NEW_YEAR_2028),
            "upgrade",
            id="upgrade-at-new-year",
        ),
        pytest.param(
            TierStatus("Gold", NEW_YEAR_2027),
            0,
            GOLD,
            NEW_YEAR_2027,
            TierStatus("Gold", NEW_YEAR_2028),
            "requalified",
            id="requalified",
        ),
        pytest.param(
            TierStatus("Gold", NEW_YEAR_2027),
            SILVER,
            SILVER,
            NEW_YEAR_2027 + 30 * DAY - US,
            TierStatus("Gold", NEW_YEAR_2027),
            "grace",
            id="grace",
        ),
        pytest.param(
            TierStatus("Gold", NEW_YEAR_2027),
            SILVER,
            SILVER,
            NEW_YEAR_2027 + 30 * DAY,
            TierStatus("Silver", NEW_YEAR_2028),
            "downgrade",
            id="downgrade",
        ),
    ],
)
def test_decide_tier_calendar_year(
    status: TierStatus, now: int, period: int, at: datetime, expected: TierStatus, reason: str
) -> None:
    decision = decide(CALENDAR, status, now, period, at)
    assert (decision.status, decision.reason) == (expected, reason)


# --- windows and reviews ---------------------------------------------------------------------


def counts_at(window: tuple[datetime, datetime], moment: datetime) -> bool:
    """Whether activity at `moment` counts in `window` (start excluded, end included)."""
    start, end = window
    return start < moment <= end


@pytest.mark.parametrize(
    ("end", "start"),
    [
        pytest.param(REVIEW, T0, id="12-months-back"),
        pytest.param(
            datetime(2028, 2, 29, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC), id="from-feb29"
        ),
        pytest.param(NEW_YEAR_2027, datetime(2026, 1, 1, tzinfo=UTC), id="at-new-year"),
    ],
)
def test_rolling_window(end: datetime, start: datetime) -> None:
    window = qualification_window(ROLLING.tiers, end)
    assert window == (start, end)
    assert not counts_at(window, start)  # the order that won a tier a period ago
    assert counts_at(window, start + US)
    assert counts_at(window, end)  # the order at the very moment of the decision
    assert not counts_at(window, end + US)


@pytest.mark.parametrize(
    ("end", "year"),
    [
        pytest.param(T0, 2026, id="mid-year"),
        pytest.param(datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 2026, id="first-microsecond"),
        pytest.param(NEW_YEAR_2027 - US, 2026, id="last-microsecond"),
        pytest.param(NEW_YEAR_2027, 2026, id="new-year-closes-the-year-before"),
        pytest.param(NEW_YEAR_2027 + US, 2027, id="new-year-plus-1us"),
    ],
)
def test_calendar_year_window(end: datetime, year: int) -> None:
    new_year = datetime(year, 1, 1, tzinfo=UTC)
    window = qualification_window(CALENDAR.tiers, end)
    assert window == (new_year - US, end)
    assert counts_at(window, new_year)
    assert not counts_at(window, new_year - US)
    assert counts_at(window, end)
    assert not counts_at(window, end + US)


@pytest.mark.parametrize(
    ("program_", "after", "review"),
    [
        pytest.param(ROLLING, T0, REVIEW, id="rolling"),
        pytest.param(
            ROLLING,
            datetime(2028, 2, 29, 8, tzinfo=UTC),
            datetime(2029, 2, 28, 8, tzinfo=UTC),
            id="rolling-feb29",
        ),
        pytest.param(CALENDAR, T0, NEW_YEAR_2027, id="calendar"),
        pytest.param(CALENDAR, NEW_YEAR_2027 - US, NEW_YEAR_2027, id="calendar-last-microsecond"),
        pytest.param(CALENDAR, NEW_YEAR_2027, NEW_YEAR_2028, id="calendar-at-new-year"),
    ],
)
def test_next_review(program_: Program, after: datetime, review: datetime) -> None:
    assert next_review(program_.tiers, after) == review


# --- events and progress ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "decision",
    [
        pytest.param(TierDecision(TierStatus("Gold", REVIEW)), id="kept"),
        pytest.param(TierDecision(TierStatus("Gold", REVIEW), reason="grace"), id="grace"),
        pytest.param(
            TierDecision(TierStatus("Gold", NEXT_REVIEW), reason="requalified"), id="requalified"
        ),
    ],
)
def test_no_event_unless_the_tier_changed(decision: TierDecision) -> None:
    assert tier_events("m1", decision, REVIEW) == []


@pytest.mark.parametrize(
    "decision",
    [
        pytest.param(TierDecision(TierStatus("Gold", REVIEW), None, "upgrade"), id="upgrade"),
        pytest.param(TierDecision(TierStatus("Silver", REVIEW), "Gold", "downgrade"), id="down"),
    ],
)
def test_tier_changed_event(decision: TierDecision) -> None:
    assert tier_events("m1", decision, T0) == [
        OutboxEvent(
            "tier.changed",
            {
                "member_id": "m1",
                "from": decision.changed_from,
                "to": decision.status.tier,
                "reason": decision.reason,
                "review_at": REVIEW,
                "at": T0,
            },
        )
    ]


@pytest.mark.parametrize(
    ("tier", "now", "next_tier", "left", "benefits"),
    [
        pytest.param(None, 0, "Silver", SILVER, None, id="no-tier"),
        pytest.param(None, SILVER - 1, "Silver", 1, None, id="one-short"),
        pytest.param("Silver", GOLD + 1, "Gold", 0, "Silver", id="past-the-next-threshold"),
        pytest.param("Gold", 0, "Platinum", PLATINUM, "Gold", id="nothing-yet"),
        pytest.param("Platinum", 0, None, 0, "Platinum", id="top"),
    ],
)
def test_tier_progress(
    tier: str | None, now: int, next_tier: str | None, left: int, benefits: str | None
) -> None:
    progress = tier_progress(ROLLING, TierStatus(tier, REVIEW), now)
    assert (progress.tier, progress.next_tier, progress.amount_left) == (tier, next_tier, left)
    assert progress.review_at == REVIEW
    assert (progress.benefits.name if progress.benefits else None) == benefits
