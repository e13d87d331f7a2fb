"""`referrals.rules` from plain values: attachment, the referee's and the referrer's rewards at
their boundaries (minimum first order, monthly cap, ladder steps), and reversal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import add_months
from pointguard.program.document.schema import Program
from pointguard.program.document.validate import parse_program
from pointguard.program.events import (
    ActionPerformed,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
)
from pointguard.program.intents import EarnIntent, TakeBackIntent
from pointguard.program.orders.earning import LinePoints
from pointguard.program.orders.rules import OrderRecord, after_refund
from pointguard.program.referrals.rules import (
    Referral,
    ReferralStatus,
    ReferrerCounts,
    decide_attachment,
    decide_referral,
    decide_reversal,
    may_reverse,
    referee_key,
    referrer_key,
    referrer_reward_due,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
RETURN_WINDOW = timedelta(days=14)
MIN_FIRST_ORDER = 3000
CAP = 2
REFEREE_POINTS = 200
REFERRER_POINTS = 500


def program(*, referrals: bool = True, **fields: Any) -> Program:
    """A program with referrals (the constants above, `fields` replaced), or without them."""
    doc: dict[str, Any] = {
        "name": "Referrals",
        "currency": "EUR",
        "return_window_days": RETURN_WINDOW.days,
        "earning": {"points_per_major_unit": "1"},
    }
    if referrals:
        doc["referrals"] = {
            "referee_points": REFEREE_POINTS,
            "referee_reward_on": "first_order",
            "referrer_points": REFERRER_POINTS,
            "min_first_order_minor": MIN_FIRST_ORDER,
            "max_rewarded_per_month": CAP,
            "ladder": [
                {"referrals": 3, "bonus_points": 1000},
                {"referrals": 5, "bonus_points": 2500},
                {"referrals": 7, "bonus_points": 0},
            ],
            **fields,
        }
    return parse_program(doc)


PROGRAM = program()
WITHOUT_REFERRALS = program(referrals=False)


def signup(member: str = "bob") -> ActionPerformed:
    return ActionPerformed(
        event_id=f"signup-{member}", member_id=member, occurred_at=T0, action="signup"
    )


def paid(n: int = 1, at: datetime = T0, member: str = "bob") -> OrderPaid:
    return OrderPaid(
        event_id=f"paid-{member}-{n}",
        member_id=member,
        occurred_at=at,
        order_id=f"{member}-{n}",
        currency="EUR",
        lines=[OrderLine(line_id="1", sku="S", category="c", quantity=2, unit_price_minor=2500)],
    )


ATTACHED = Referral("bob", "ann", ReferralStatus.ATTACHED)
REWARDED = Referral(
    "bob",
    "ann",
    ReferralStatus.REWARDED,
    referee_rewarded=True,
    first_order_id="bob-1",
    rewarded_at=T0,
)


def counts(this_month: int = 0, successful: int = 0) -> ReferrerCounts:
    return ReferrerCounts(this_month=this_month, successful=successful)


def referee_welcome(release_at: datetime | None, earned_at: datetime) -> EarnIntent:
    return EarnIntent(
        referee_key("bob"),
        REFEREE_POINTS,
        f"{REFEREE_POINTS} points welcome gift: you joined through a friend",
        "referral:referee",
        release_at,
        add_months(release_at or earned_at, 12),
    )


def referrer_earn(key: str, points: int, description: str, source: str) -> EarnIntent:
    """An earn of the referrer's, won by bob's first order at T0: pending its return window."""
    release_at = T0 + RETURN_WINDOW
    return EarnIntent(
        key, points, description, source, release_at, add_months(release_at, 12), member_id="ann"
    )


def referrer_reward() -> EarnIntent:
    return referrer_earn(
        referrer_key("bob"),
        REFERRER_POINTS,
        f"{REFERRER_POINTS} points for referring a friend",
        "referral:referrer",
    )


def ladder_bonus(step: int, points: int) -> EarnIntent:
    nth = {3: "3rd", 5: "5th"}[step]
    return referrer_earn(
        idempotency_key("referral-ladder", "ann", step),
        points,
        f"{points} bonus points for your {nth} successful referral",
        "referral:ladder",
    )


# --- attachment ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [signup(), paid()], ids=["signup", "first-order"])
@pytest.mark.parametrize(
    ("owner", "earlier_orders", "expected"),
    [
        pytest.param(None, False, None, id="unknown-code"),
        pytest.param("ann", True, None, id="earlier-orders"),
        pytest.param("bob", True, None, id="own-code-with-earlier-orders"),
        pytest.param("bob", False, Referral("bob", "bob", ReferralStatus.REFUSED_SELF), id="own"),
        pytest.param("ann", False, ATTACHED, id="attached"),
    ],
)
def test_decide_attachment(
    event: ActionPerformed | OrderPaid,
    owner: str | None,
    earlier_orders: bool,
    expected: Referral | None,
) -> None:
    assert decide_attachment(event, owner, earlier_orders=earlier_orders) == expected


# --- the referee's welcome -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reward_on", "event", "welcome"),
    [
        pytest.param("signup", signup(), referee_welcome(None, T0), id="on-signup-at-signup"),
        pytest.param("signup", paid(), None, id="on-signup-not-at-order"),
        pytest.param("first_order", signup(), None, id="on-order-not-at-signup"),
        pytest.param(
            "first_order",
            paid(),
            referee_welcome(T0 + RETURN_WINDOW, T0),
            id="on-order-after-return-window",
        ),
    ],
)
def test_referee_welcome_on_signup_or_first_order(
    reward_on: str, event: ActionPerformed | OrderPaid, welcome: EarnIntent | None
) -> None:
    decision = decide_referral(
        program(referee_reward_on=reward_on),
        event,
        ATTACHED,
        eligible_total_minor=MIN_FIRST_ORDER,
        referrer=counts(),
    )
    welcomes = [i for i in decision.intents if i.key == referee_key("bob")]
    assert welcomes == ([] if welcome is None else [welcome])
    assert decision.referral.referee_rewarded is (welcome is not None)


@pytest.mark.parametrize(
    ("reward_on", "event"),
    [("signup", signup()), ("first_order", paid())],
    ids=["on-signup", "on-first-order"],
)
def test_referee_welcome_is_given_once(reward_on: str, event: ActionPerformed | OrderPaid) -> None:
    referral = Referral("bob", "ann", ReferralStatus.ATTACHED, referee_rewarded=True)
    decision = decide_referral(
        program(referee_reward_on=reward_on),
        event,
        referral,
        eligible_total_minor=MIN_FIRST_ORDER,
        referrer=counts(),
    )
    assert referee_key("bob") not in [i.key for i in decision.intents]
    assert decision.referral.referee_rewarded is True


def test_no_referee_welcome_when_it_is_zero() -> None:
    decision = decide_referral(
        program(referee_points=0), paid(), ATTACHED, eligible_total_minor=0, referrer=None
    )
    assert decision.intents == []
    assert decision.referral.referee_rewarded is False


# --- the referrer's reward -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eligible_total_minor", "referrer", "status", "rewarded"),
    [
        pytest.param(MIN_FIRST_ORDER, counts(), ReferralStatus.REWARDED, True, id="minimum"),
        pytest.param(MIN_FIRST_ORDER - 1, None, ReferralStatus.TOO_SMALL, False, id="one-below"),
        pytest.param(0, None, ReferralStatus.TOO_SMALL, False, id="nothing-eligible"),
        pytest.param(
            MIN_FIRST_ORDER, counts(this_month=CAP - 1), ReferralStatus.REWARDED, True, id="cap-1"
        ),
        pytest.param(
            MIN_FIRST_ORDER, counts(this_month=CAP), ReferralStatus.CAPPED, False, id="at-cap"
        ),
        pytest.param(
            MIN_FIRST_ORDER, counts(this_month=CAP + 5), ReferralStatus.CAPPED, False, id="over-cap"
        ),
    ],
)
def test_referrer_reward_at_the_minimum_and_the_cap(
    eligible_total_minor: int,
    referrer: ReferrerCounts | None,
    status: ReferralStatus,
    rewarded: bool,
) -> None:
    decision = decide_referral(
        PROGRAM, paid(), ATTACHED, eligible_total_minor=eligible_total_minor, referrer=referrer
    )
    assert decision.referral == Referral(
        "bob",
        "ann",
        status,
        referee_rewarded=True,
        first_order_id="bob-1",
        rewarded_at=T0 if rewarded else None,
    )
    assert decision.intents == [
        referee_welcome(T0 + RETURN_WINDOW, T0),
        *([referrer_reward()] if rewarded else []),
    ]


@pytest.mark.parametrize("this_month", [0, CAP, 10**6])
def test_no_cap_never_caps(this_month: int) -> None:
    decision = decide_referral(
        program(max_rewarded_per_month=None),
        paid(),
        ATTACHED,
        eligible_total_minor=MIN_FIRST_ORDER,
        referrer=counts(this_month=this_month),
    )
    assert decision.referral.status == ReferralStatus.REWARDED
    assert referrer_reward() in decision.intents


@pytest.mark.parametrize(
    ("successful", "ladder"),
    [
        pytest.param(0, [], id="1st"),
        pytest.param(1, [], id="2nd"),
        pytest.param(2, [ladder_bonus(3, 1000)], id="3rd-step"),
        pytest.param(3, [], id="4th-after-step"),
        pytest.param(4, [ladder_bonus(5, 2500)], id="5th-step"),
        pytest.param(5, [], id="6th-after-step"),
        pytest.param(6, [], id="7th-step-of-zero-points"),
        pytest.param(7, [], id="past-the-ladder"),
    ],
)
def test_ladder_step_pays_on_the_nth_successful_referral_only(
    successful: int, ladder: list[EarnIntent]
) -> None:
    decision = decide_referral(
        program(referee_points=0),
        paid(),
        ATTACHED,
        eligible_total_minor=MIN_FIRST_ORDER,
        referrer=counts(successful=successful),
    )
    assert decision.intents == [referrer_reward(), *ladder]


def test_capped_referral_climbs_no_ladder() -> None:
    decision = decide_referral(
        PROGRAM,
        paid(),
        ATTACHED,
        eligible_total_minor=MIN_FIRST_ORDER,
        referrer=counts(this_month=CAP, successful=2),
    )
    assert [i.source for i in decision.intents] == ["referral:referee"]


@pytest.mark.parametrize("reward_on", ["signup", "first_order"])
@pytest.mark.parametrize("event", [signup("bob"), paid()], ids=["signup", "first-order"])
def test_self_referral_earns_nothing(reward_on: str, event: ActionPerformed | OrderPaid) -> None:
    refused = Referral("bob", "bob", ReferralStatus.REFUSED_SELF)
    decision = decide_referral(
        program(referee_reward_on=reward_on),
        event,
        refused,
        eligible_total_minor=10**6,
        referrer=counts(),
    )
    assert (decision.referral, decision.intents) == (refused, [])


@pytest.mark.parametrize(
    "referral",
    [
        pytest.param(REWARDED, id="rewarded"),
        pytest.param(
            Referral(
                "bob",
                "ann",
                ReferralStatus.TOO_SMALL,
                referee_rewarded=True,
                first_order_id="bob-1",
            ),
            id="too-small",
        ),
        pytest.param(
            Referral(
                "bob", "ann", ReferralStatus.CAPPED, referee_rewarded=True, first_order_id="bob-1"
            ),
            id="capped",
        ),
        pytest.param(
            Referral(
                "bob", "ann", ReferralStatus.REVERSED, referee_rewarded=True, first_order_id="bob-1"
            ),
            id="reversed",
        ),
    ],
)
def test_a_later_paid_order_changes_nothing(referral: Referral) -> None:
    """Regression: a rewarded referee's second order used to clear `rewarded_at`."""
    later = paid(2, at=T0 + timedelta(days=40))
    decision = decide_referral(
        PROGRAM, later, referral, eligible_total_minor=10**6, referrer=counts(successful=2)
    )
    assert (decision.referral, decision.intents) == (referral, [])
    assert decision.referral.rewarded_at == referral.rewarded_at


def test_without_referrals_nothing_happens() -> None:
    decision = decide_referral(
        WITHOUT_REFERRALS, paid(), ATTACHED, eligible_total_minor=10**6, referrer=counts()
    )
    assert (decision.referral, decision.intents) == (ATTACHED, [])


# --- when the referrer's counts are needed ---------------------------------------------------

DUE_CASES = [
    pytest.param(PROGRAM, paid(), ATTACHED, MIN_FIRST_ORDER, True, id="first-order-at-minimum"),
    pytest.param(PROGRAM, paid(), ATTACHED, 10**6, True, id="first-order-large"),
    pytest.param(PROGRAM, paid(), ATTACHED, MIN_FIRST_ORDER - 1, False, id="one-below"),
    pytest.param(PROGRAM, signup(), ATTACHED, 10**6, False, id="signup"),
    pytest.param(WITHOUT_REFERRALS, paid(), ATTACHED, 10**6, False, id="no-referrals"),
    pytest.param(
        program(min_first_order_minor=0), paid(), ATTACHED, 0, True, id="no-minimum-empty-order"
    ),
    *(
        pytest.param(
            PROGRAM,
            paid(),
            Referral("bob", "ann" if status != ReferralStatus.REFUSED_SELF else "bob", status),
            10**6,
            False,
            id=f"status-{status.value}",
        )
        for status in ReferralStatus
        if status != ReferralStatus.ATTACHED
    ),
]


@pytest.mark.parametrize(("program_", "event", "referral", "eligible", "due"), DUE_CASES)
def test_referrer_reward_due(
    program_: Program,
    event: ActionPerformed | OrderPaid,
    referral: Referral,
    eligible: int,
    due: bool,
) -> None:
    assert referrer_reward_due(program_, event, referral, eligible) is due


@pytest.mark.parametrize(("program_", "event", "referral", "eligible", "due"), DUE_CASES)
def test_counts_are_needed_exactly_when_due(
    program_: Program,
    event: ActionPerformed | OrderPaid,
    referral: Referral,
    eligible: int,
    due: bool,
) -> None:
    if due:
        with pytest.raises(ValueError, match="referrer's counts are needed"):
            decide_referral(program_, event, referral, eligible_total_minor=eligible)
    else:
        decide_referral(program_, event, referral, eligible_total_minor=eligible)


# --- reversal --------------------------------------------------------------------------------

FIRST_ORDER = OrderRecord("bob-1", (LinePoints("1", 2, 50),), {})


def refund(units: int) -> OrderRefunded:
    return OrderRefunded(
        event_id=f"refund-{units}",
        member_id="bob",
        occurred_at=T0 + timedelta(days=3),
        order_id="bob-1",
        lines=[RefundedLine(line_id="1", quantity=units)],
    )


CANCEL = OrderCancelled(
    event_id="cancel", member_id="bob", occurred_at=T0 + timedelta(days=3), order_id="bob-1"
)
KEPT = after_refund(FIRST_ORDER, refund(1))
RETURNED = after_refund(FIRST_ORDER, refund(2))
CANCELLED = after_refund(KEPT, CANCEL)


def taken_back(earn_key: str, points: int, words: str) -> TakeBackIntent:
    key = idempotency_key("referral-reversed", earn_key)
    return TakeBackIntent(earn_key, key, points, f"{points} {words}", "referral:reversed")


REFERRER_BACK = taken_back(
    referrer_key("bob"),
    REFERRER_POINTS,
    "referral points back: your friend's first order was returned",
)
REFEREE_BACK = taken_back(
    referee_key("bob"), REFEREE_POINTS, "welcome points back: your first order was returned"
)


@pytest.mark.parametrize(
    ("program_", "order", "may"),
    [
        pytest.param(PROGRAM, FIRST_ORDER, False, id="untouched"),
        pytest.param(PROGRAM, KEPT, False, id="partly-refunded"),
        pytest.param(PROGRAM, RETURNED, True, id="fully-refunded"),
        pytest.param(PROGRAM, CANCELLED, True, id="cancelled"),
        pytest.param(WITHOUT_REFERRALS, RETURNED, False, id="no-referrals"),
    ],
)
def test_may_reverse(program_: Program, order: OrderRecord, may: bool) -> None:
    assert may_reverse(program_, order) is may


@pytest.mark.parametrize(
    ("fields", "order", "expected"),
    [
        pytest.param({}, RETURNED, [REFERRER_BACK, REFEREE_BACK], id="fully-refunded"),
        pytest.param({}, CANCELLED, [REFERRER_BACK, REFEREE_BACK], id="cancelled"),
        pytest.param({"referee_reward_on": "signup"}, RETURNED, [REFERRER_BACK], id="on-signup"),
        pytest.param({"referee_points": 0}, RETURNED, [REFERRER_BACK], id="no-welcome"),
    ],
)
def test_reversal_takes_back_the_order_rewards(
    fields: dict[str, Any], order: OrderRecord, expected: list[TakeBackIntent]
) -> None:
    decision = decide_reversal(program(**fields), REWARDED, order)
    assert decision.intents == expected
    assert decision.referral == Referral(
        "bob",
        "ann",
        ReferralStatus.REVERSED,
        referee_rewarded=True,
        first_order_id="bob-1",
        rewarded_at=None,
    )


@pytest.mark.parametrize(
    ("program_", "referral", "order"),
    [
        pytest.param(PROGRAM, REWARDED, FIRST_ORDER, id="order-untouched"),
        pytest.param(PROGRAM, REWARDED, KEPT, id="order-partly-kept"),
        pytest.param(
            PROGRAM,
            REWARDED,
            after_refund(OrderRecord("bob-2", FIRST_ORDER.lines, {}), CANCEL),
            id="another-order",
        ),
        pytest.param(WITHOUT_REFERRALS, REWARDED, RETURNED, id="no-referrals"),
        *(
            pytest.param(
                PROGRAM,
                Referral("bob", "ann", status, referee_rewarded=True, first_order_id="bob-1"),
                RETURNED,
                id=f"status-{status.value}",
            )
            for status in ReferralStatus
            if status
            not in (ReferralStatus.REWARDED, ReferralStatus.CAPPED, ReferralStatus.TOO_SMALL)
        ),
    ],
)
def test_no_reversal(program_: Program, referral: Referral, order: OrderRecord) -> None:
    decision = decide_reversal(program_, referral, order)
    assert (decision.referral, decision.intents) == (referral, [])


@pytest.mark.parametrize("status", [ReferralStatus.CAPPED, ReferralStatus.TOO_SMALL])
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, [REFEREE_BACK], id="welcome-on-first-order"),
        pytest.param({"referee_reward_on": "signup"}, [], id="welcome-on-signup"),
    ],
)
def test_a_returned_first_order_takes_its_welcome_back_though_the_referrer_earned_nothing(
    status: ReferralStatus, fields: dict[str, Any], expected: list[TakeBackIntent]
) -> None:
    """Buying, collecting the welcome and returning everything must not keep the welcome, when
    the referrer's reward was capped or the order was too small for it."""
    referral = Referral("bob", "ann", status, referee_rewarded=True, first_order_id="bob-1")
    decision = decide_reversal(program(**fields), referral, RETURNED)
    assert decision.intents == expected
    assert decision.referral.status == ReferralStatus.REVERSED
