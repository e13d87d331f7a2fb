"""`challenges.rules` from plain values: progress at the window's edges for every goal, streaks
across year boundaries, completions (generations, bonus keys and release), which challenges
stay open, and revocation after a return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pointguard.ledger.keys import idempotency_key
from pointguard.program.challenges.rules import (
    Activity,
    ActivityKind,
    ChallengeProgress,
    Completion,
    challenge_bonus_key,
    challenge_progress,
    completion_window,
    decide_completions,
    decide_revocations,
    lookback_days,
    open_challenges,
    order_completions,
    revocation_window,
)
from pointguard.program.dates import add_months
from pointguard.program.document.schema import Challenge
from pointguard.program.document.validate import parse_program
from pointguard.program.intents import EarnIntent, OutboxEvent, TakeBackIntent

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

US = timedelta(microseconds=1)
DAY = timedelta(days=1)
WINDOW = timedelta(days=30)
RETURN_WINDOW = timedelta(days=14)
AT = datetime(2026, 6, 15, 12, tzinfo=UTC)
START = AT - WINDOW  # excluded from the window; AT included


def challenge(id_: str, goal: str, target: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": id_.replace("-", " ").capitalize(),
        "goal": goal,
        "target": target,
        "window_days": WINDOW.days,
        "bonus_points": 100,
        "badge": id_.title(),
        **fields,
    }


PROGRAM = parse_program(
    {
        "name": "Challenges",
        "currency": "EUR",
        "return_window_days": RETURN_WINDOW.days,
        "earning": {"points_per_major_unit": "1"},
        "challenges": [
            challenge("two-orders", "orders", 2),
            challenge("big-spender", "spend_minor", 10000, bonus_points=0),
            challenge("critic", "reviews", 2),
            challenge("connector", "referrals", 2),
            challenge("weekly", "streak_weeks", 3),
            challenge("monthly", "streak_months", 3),
        ],
    }
)
BY_ID = {c.id: c for c in PROGRAM.challenges}
ORDER_GOALS = ["two-orders", "big-spender", "weekly", "monthly"]


def order(at: datetime, amount_minor: int = 5000) -> Activity:
    return Activity(at, "order", amount_minor)


def review(at: datetime) -> Activity:
    return Activity(at, "review")


def referral(at: datetime) -> Activity:
    return Activity(at, "referral")


def progress(id_: str, activity: list[Activity], at: datetime = AT) -> int:
    return challenge_progress(BY_ID[id_], activity, at).progress


# --- progress within the window --------------------------------------------------------------

EDGES = [
    pytest.param(START, False, id="at-start-excluded"),
    pytest.param(START + US, True, id="just-after-start"),
    pytest.param(AT, True, id="at-at-included"),
    pytest.param(AT + US, False, id="after-at"),
]
GOALS = [
    pytest.param("two-orders", order, 1, id="orders"),
    pytest.param("big-spender", lambda at: order(at, 4321), 4321, id="spend"),
    pytest.param("critic", review, 1, id="reviews"),
    pytest.param("connector", referral, 1, id="referrals"),
]


@pytest.mark.parametrize(("moment", "counted"), EDGES)
@pytest.mark.parametrize(("id_", "activity", "value"), GOALS)
def test_progress_counts_the_window_start_excluded_at_included(
    id_: str, activity: Any, value: int, moment: datetime, counted: bool
) -> None:
    assert progress(id_, [activity(moment)]) == (value if counted else 0)


@pytest.mark.parametrize(
    ("id_", "other"),
    [
        pytest.param("two-orders", [review(AT), referral(AT)], id="orders"),
        pytest.param("big-spender", [review(AT), referral(AT)], id="spend"),
        pytest.param("critic", [order(AT), referral(AT)], id="reviews"),
        pytest.param("connector", [order(AT), review(AT)], id="referrals"),
    ],
)
def test_progress_counts_its_own_kind_only(id_: str, other: list[Activity]) -> None:
    assert progress(id_, other) == 0


@pytest.mark.parametrize(
    ("id_", "activity", "value", "completed"),
    [
        pytest.param("two-orders", [order(AT)], 1, False, id="orders-one-short"),
        pytest.param("two-orders", [order(START + US), order(AT)], 2, True, id="orders-target"),
        pytest.param(
            "big-spender", [order(AT, 3333), order(AT - DAY, 6666)], 9999, False, id="spend-short"
        ),
        pytest.param(
            "big-spender", [order(AT, 3334), order(AT - DAY, 6666)], 10000, True, id="spend-target"
        ),
        pytest.param("critic", [review(AT), review(AT), review(AT)], 3, True, id="reviews-over"),
    ],
)
def test_completed_at_the_target(
    id_: str, activity: list[Activity], value: int, completed: bool
) -> None:
    result = challenge_progress(BY_ID[id_], activity, AT)
    assert result == ChallengeProgress(id_, value, BY_ID[id_].target)
    assert result.completed is completed


# --- streaks ---------------------------------------------------------------------------------


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# 2026 has 53 ISO weeks: Mon 28 Dec 2026 to Sun 3 Jan 2027 is week 53, Mon 4 Jan 2027 week 1.
@pytest.mark.parametrize(
    ("orders", "at", "streak"),
    [
        pytest.param(
            [utc(2026, 12, 21), utc(2026, 12, 31), utc(2027, 1, 4)],
            utc(2027, 1, 5),
            3,
            id="weeks-52-53-1",
        ),
        pytest.param(
            [utc(2026, 12, 21), utc(2027, 1, 4)], utc(2027, 1, 5), 1, id="week-53-missing"
        ),
        pytest.param(
            [utc(2026, 12, 28), utc(2027, 1, 3, 23, 59, 59, 999999)],
            utc(2027, 1, 3, 23, 59, 59, 999999),
            1,
            id="28-dec-and-3-jan-are-one-week",
        ),
        pytest.param(
            [utc(2026, 12, 21), utc(2026, 12, 28)],
            utc(2027, 1, 4),
            0,
            id="current-week-without-order",
        ),
        pytest.param(
            [utc(2026, 12, 21), utc(2026, 12, 28), utc(2027, 1, 4, 0, 0, 0, 1)],
            utc(2027, 1, 4),
            0,
            id="order-after-at-not-counted",
        ),
        pytest.param(
            [utc(2026, 12, 27, 23, 59, 59, 999999), utc(2026, 12, 28)],
            utc(2026, 12, 28),
            2,
            id="sunday-night-then-monday",
        ),
    ],
)
def test_streak_weeks_across_the_iso_year(
    orders: list[datetime], at: datetime, streak: int
) -> None:
    assert progress("weekly", [order(t) for t in orders], at) == streak


@pytest.mark.parametrize(
    ("orders", "at", "streak"),
    [
        pytest.param(
            [utc(2026, 11, 15), utc(2026, 12, 31, 23, 59, 59, 999999), utc(2027, 1, 1)],
            utc(2027, 1, 10),
            3,
            id="nov-dec-jan",
        ),
        pytest.param([utc(2026, 11, 15), utc(2027, 1, 1)], utc(2027, 1, 10), 1, id="dec-missing"),
        pytest.param(
            [utc(2026, 11, 15), utc(2026, 12, 31, 23, 59, 59, 999999)],
            utc(2027, 1, 1),
            0,
            id="january-without-order",
        ),
        pytest.param(
            [utc(2026, 11, 15), utc(2026, 12, 1)],
            utc(2026, 12, 31, 23, 59, 59, 999999),
            2,
            id="last-microsecond-of-december",
        ),
        pytest.param(
            [utc(2025, 12, 1), utc(2026, 1, 1), utc(2026, 2, 1), utc(2026, 3, 1)],
            utc(2026, 3, 1),
            4,
            id="longer-than-target",
        ),
        pytest.param([utc(2027, 1, 1)], utc(2027, 1, 31), 1, id="single-month"),
    ],
)
def test_streak_months_across_the_year(orders: list[datetime], at: datetime, streak: int) -> None:
    assert progress("monthly", [order(t) for t in orders], at) == streak


def test_streaks_count_orders_only() -> None:
    at = utc(2027, 1, 5)
    assert progress("weekly", [review(at), referral(at)], at) == 0
    assert progress("monthly", [review(at), referral(at)], at) == 0


# --- completions -----------------------------------------------------------------------------

TWO_ORDERS = [order(AT - DAY, 100), order(AT, 100)]  # too little for big-spender


def done(id_: str, at: datetime = AT, generation: int = 0, revoked: bool = False) -> Completion:
    return Completion(id_, at, generation, revoked)


@pytest.mark.parametrize(
    ("completions", "generation"),
    [
        pytest.param({}, 0, id="first"),
        pytest.param({"two-orders": done("two-orders", revoked=True)}, 1, id="after-revoked-0"),
        pytest.param(
            {"two-orders": done("two-orders", generation=2, revoked=True)}, 3, id="after-revoked-2"
        ),
    ],
)
def test_completion_generation_and_bonus_key(
    completions: dict[str, Completion], generation: int
) -> None:
    decision = decide_completions(PROGRAM, "m1", "order", completions, TWO_ORDERS, AT)
    two_orders = BY_ID["two-orders"]
    assert decision.completed == [(two_orders, generation)]
    release_at = AT + RETURN_WINDOW
    assert decision.intents == [
        EarnIntent(
            challenge_bonus_key("two-orders", "m1", generation),
            100,
            "100 bonus points: 'Two orders' completed, badge 'Two-Orders'",
            "challenge:two-orders",
            release_at,
            add_months(release_at, 12),
            member_id="m1",
        )
    ]
    assert decision.events == [
        OutboxEvent(
            "challenge.completed",
            {
                "member_id": "m1",
                "challenge_id": "two-orders",
                "badge": "Two-Orders",
                "bonus_points": 100,
                "at": AT,
            },
        )
    ]
    assert decision.revoked == []


def test_bonus_keys_differ_by_challenge_member_and_generation() -> None:
    keys = {
        challenge_bonus_key(c, m, g)
        for c in ("two-orders", "critic")
        for m in ("m1", "m2")
        for g in (0, 1)
    }
    assert len(keys) == 8


@pytest.mark.parametrize(
    ("kind", "id_", "activity", "release_at"),
    [
        pytest.param("order", "two-orders", TWO_ORDERS, AT + RETURN_WINDOW, id="order-waits"),
        pytest.param(
            "referral",
            "connector",
            [referral(AT - DAY), referral(AT)],
            AT + RETURN_WINDOW,
            id="referral-waits",
        ),
        pytest.param("review", "critic", [review(AT - DAY), review(AT)], None, id="review-at-once"),
    ],
)
def test_bonus_release(
    kind: ActivityKind, id_: str, activity: list[Activity], release_at: datetime | None
) -> None:
    decision = decide_completions(PROGRAM, "m1", kind, {}, activity, AT)
    [intent] = decision.intents
    assert isinstance(intent, EarnIntent)
    assert (intent.key, intent.release_at) == (challenge_bonus_key(id_, "m1", 0), release_at)
    assert intent.expires_at == add_months(release_at or AT, 12)


def test_a_challenge_without_bonus_completes_without_an_earn() -> None:
    decision = decide_completions(PROGRAM, "m1", "order", {}, [order(AT, 10000)], AT)
    assert decision.completed == [(BY_ID["big-spender"], 0)]
    assert decision.intents == []
    assert [e.payload["challenge_id"] for e in decision.events] == ["big-spender"]


def test_nothing_completes_below_the_target() -> None:
    decision = decide_completions(PROGRAM, "m1", "order", {}, [order(AT, 9999)], AT)
    assert (decision.completed, decision.intents, decision.events) == ([], [], [])


def test_an_activity_completes_only_the_challenges_it_can_move() -> None:
    """Two orders complete the order challenge, but a review at that moment does not."""
    decision = decide_completions(PROGRAM, "m1", "review", {}, TWO_ORDERS, AT)
    assert decision.completed == []


@pytest.mark.parametrize(
    ("kind", "completions", "expected"),
    [
        pytest.param("order", {}, ORDER_GOALS, id="order-goals"),
        pytest.param("review", {}, ["critic"], id="review"),
        pytest.param("referral", {}, ["connector"], id="referral"),
        pytest.param(
            "order",
            {"two-orders": done("two-orders"), "critic": done("critic")},
            ["big-spender", "weekly", "monthly"],
            id="completed-closed",
        ),
        pytest.param(
            "order",
            {"two-orders": done("two-orders", generation=4, revoked=True)},
            ORDER_GOALS,
            id="revoked-open-again",
        ),
        pytest.param("review", {"critic": done("critic")}, [], id="review-completed"),
    ],
)
def test_open_challenges(
    kind: ActivityKind, completions: dict[str, Completion], expected: list[str]
) -> None:
    assert [c.id for c in open_challenges(PROGRAM, kind, completions)] == expected


def test_a_completed_challenge_does_not_complete_again() -> None:
    completions = {"two-orders": done("two-orders", at=AT - DAY)}
    decision = decide_completions(PROGRAM, "m1", "order", completions, TWO_ORDERS, AT)
    assert decision.completed == []


# --- revocations -----------------------------------------------------------------------------


def revoked_bonus(id_: str, generation: int) -> TakeBackIntent:
    earned = challenge_bonus_key(id_, "m1", generation)
    name = BY_ID[id_].name
    return TakeBackIntent(
        earned,
        idempotency_key("challenge-revoked", earned),
        100,
        f"100 bonus points back: '{name}' is no longer completed after a return",
        f"challenge:{id_}",
    )


RETURN_AT = AT + 3 * DAY


@pytest.mark.parametrize(
    ("kept", "revoked"),
    [
        pytest.param(TWO_ORDERS, False, id="still-complete"),
        pytest.param([order(AT - DAY), order(AT), order(AT + DAY)], False, id="more-kept"),
        pytest.param([order(AT)], True, id="one-returned"),
        pytest.param([order(AT), order(AT + DAY)], True, id="later-order-does-not-save-it"),
        pytest.param([order(START), order(AT)], True, id="order-outside-the-window"),
        pytest.param([], True, id="all-returned"),
    ],
)
def test_revocation_as_of_the_completion(kept: list[Activity], revoked: bool) -> None:
    completed = [(BY_ID["two-orders"], done("two-orders", generation=2))]
    decision = decide_revocations("m1", completed, kept, RETURN_AT)
    if not revoked:
        assert (decision.revoked, decision.intents, decision.events) == ([], [], [])
        return
    assert decision.revoked == [BY_ID["two-orders"]]
    assert decision.intents == [revoked_bonus("two-orders", 2)]
    assert decision.events == [
        OutboxEvent(
            "challenge.revoked", {"member_id": "m1", "challenge_id": "two-orders", "at": RETURN_AT}
        )
    ]
    assert decision.completed == []


def test_revocations_keep_some_and_revoke_others() -> None:
    """Orders kept on the three Sundays before AT (a Monday): the weekly streak completed on the
    last of them stands; the challenges completed 20 days before AT no longer do."""
    kept = [order(AT - 15 * DAY), order(AT - 8 * DAY, 10000), order(AT - DAY)]
    completed = [
        (BY_ID["two-orders"], done("two-orders", at=AT - 20 * DAY, generation=1)),
        (BY_ID["big-spender"], done("big-spender", at=AT - 20 * DAY)),
        (BY_ID["weekly"], done("weekly", at=AT - DAY)),
    ]
    decision = decide_revocations("m1", completed, kept, RETURN_AT)
    assert [c.id for c in decision.revoked] == ["two-orders", "big-spender"]
    assert decision.intents == [revoked_bonus("two-orders", 1)]  # big-spender has no bonus
    assert [e.payload["challenge_id"] for e in decision.events] == ["two-orders", "big-spender"]


def test_order_completions_in_completion_order() -> None:
    completions = {
        "monthly": done("monthly", at=AT),
        "two-orders": done("two-orders", at=AT),
        "big-spender": done("big-spender", at=AT - DAY),
        "weekly": done("weekly", at=AT - 2 * DAY, revoked=True),
        "critic": done("critic", at=AT - 3 * DAY),
        "connector": done("connector", at=AT - 3 * DAY),
    }
    assert [(c.id, d) for c, d in order_completions(PROGRAM, completions)] == [
        ("big-spender", completions["big-spender"]),
        ("monthly", completions["monthly"]),  # a tie goes by challenge id
        ("two-orders", completions["two-orders"]),
    ]


# --- how much history the checks read --------------------------------------------------------


def test_lookback_days() -> None:
    assert lookback_days([BY_ID["two-orders"]]) == WINDOW.days + 1
    assert lookback_days([BY_ID["weekly"]]) == max(WINDOW.days, 3 * 7) + 1
    assert lookback_days([BY_ID["monthly"]]) == max(WINDOW.days, 3 * 31) + 1
    assert lookback_days(PROGRAM.challenges) == 3 * 31 + 1


def test_completion_and_revocation_windows() -> None:
    two_orders, monthly = BY_ID["two-orders"], BY_ID["monthly"]
    assert completion_window([two_orders], AT) == (AT - (WINDOW + DAY), AT)
    completed: list[tuple[Challenge, Completion]] = [
        (two_orders, done("two-orders", at=AT)),
        (monthly, done("monthly", at=AT - 5 * DAY)),
    ]
    assert revocation_window(completed) == (AT - 5 * DAY - 94 * DAY, AT)
