"""The intents each event kind's decision gives (`orders.rules.decide_paid_order`,
`orders.rules.decide_refund`, `actions.rules.action_earns`), with their keys, points,
descriptions and dates."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pointguard.ledger.keys import idempotency_key
from pointguard.program.actions.rules import ActionCounts, action_earns, decide_action
from pointguard.program.dates import add_months, lot_expiry
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
from pointguard.program.orders.earning import Buyer, order_points
from pointguard.program.orders.rules import (
    OrderRecord,
    after_refund,
    decide_paid_order,
    decide_refund,
    order_bonus_key,
    order_earn_key,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

EXAMPLE_TEXT = (
    Path(__file__).resolve().parents[2] / "docs" / "examples" / "program.toml"
).read_text()
EXAMPLE = parse_program(EXAMPLE_TEXT)


def variant(**top: Any) -> Program:
    """The example program with top-level fields replaced."""
    doc = tomllib.loads(EXAMPLE_TEXT)
    doc.update(top)
    return parse_program(doc)


def line(line_id: str, price: int, qty: int = 1, category: str = "misc") -> OrderLine:
    return OrderLine(
        line_id=line_id,
        sku=f"SKU-{line_id}",
        category=category,
        quantity=qty,
        unit_price_minor=price,
    )


def paid(at: datetime, *lines: OrderLine, order_id: str = "o1") -> OrderPaid:
    return OrderPaid(
        event_id=f"paid-{order_id}",
        member_id="m1",
        occurred_at=at,
        order_id=order_id,
        currency="EUR",
        lines=list(lines),
    )


def refund(event_id: str, *lines: tuple[str, int], order_id: str = "o1") -> OrderRefunded:
    return OrderRefunded(
        event_id=event_id,
        member_id="m1",
        occurred_at=datetime(2026, 6, 20, tzinfo=UTC),
        order_id=order_id,
        lines=[RefundedLine(line_id=i, quantity=q) for i, q in lines],
    )


def cancel(event_id: str, order_id: str = "o1") -> OrderCancelled:
    return OrderCancelled(
        event_id=event_id,
        member_id="m1",
        occurred_at=datetime(2026, 6, 20, tzinfo=UTC),
        order_id=order_id,
    )


def action(
    name: str, at: datetime, event_id: str = "e1", birthday: date | None = None
) -> ActionPerformed:
    return ActionPerformed(
        event_id=event_id, member_id="m1", occurred_at=at, action=name, birthday=birthday
    )


def record_of(program: Program, event: OrderPaid, buyer: Buyer, **kw: Any) -> OrderRecord:
    """The record `apply.py` keeps of an `order.paid`: its line points and bonus earn keys."""
    points = order_points(program, event, buyer)
    bonus_keys = {order_bonus_key(event.order_id, b.source): b.points for b in points.bonuses}
    return OrderRecord(event.order_id, points.lines, bonus_keys, **kw)


# --- order.paid ------------------------------------------------------------------------------

JUNE = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def test_order_paid_earns_pending_until_the_return_window_ends() -> None:
    event = paid(JUNE, line("a", 2500, qty=2, category="shoes"), line("b", 1999, category="books"))
    assert decide_paid_order(event, EXAMPLE, Buyer()).intents == [
        EarnIntent(
            key=order_earn_key("o1"),
            points=119,  # 50 EUR of shoes x2 = 100, 19.99 EUR of books floored = 19
            description="119 points for order #o1",
            source="earning:order",
            release_at=datetime(2026, 7, 10, 12, 0, tzinfo=UTC),
            expires_at=datetime(2027, 7, 10, 12, 0, tzinfo=UTC),
        )
    ]


def test_order_paid_description_names_the_applied_promotion() -> None:
    at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    [intent] = decide_paid_order(
        paid(at, line("a", 6000, category="shoes")), EXAMPLE, Buyer()
    ).intents
    assert intent.key == order_earn_key("o1")
    assert intent.points == 240  # 60 EUR x2 (shoes) x2 (Black Friday)
    assert intent.description == "240 points for order #o1 (Black Friday double points)"
    assert intent.release_at == datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
    assert intent.expires_at == datetime(2027, 12, 28, 10, 0, tzinfo=UTC)


def test_order_paid_description_omits_a_promotion_whose_cap_is_spent() -> None:
    at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    buyer = Buyer(promotion_points={"black-friday": 2000})
    [intent] = decide_paid_order(
        paid(at, line("a", 6000, category="shoes")), EXAMPLE, buyer
    ).intents
    assert (intent.points, intent.description) == (120, "120 points for order #o1")


def test_order_paid_names_every_applied_promotion_sorted() -> None:
    program = variant(
        promotions=[
            {
                "id": "z",
                "name": "Zebra days",
                "starts_at": datetime(2026, 6, 1, tzinfo=UTC),
                "ends_at": datetime(2026, 7, 1, tzinfo=UTC),
                "multiplier": "2",
                "categories": ["books"],
            },
            {
                "id": "a",
                "name": "Aardvark week",
                "starts_at": datetime(2026, 6, 1, tzinfo=UTC),
                "ends_at": datetime(2026, 7, 1, tzinfo=UTC),
                "multiplier": "3",
                "categories": ["toys"],
            },
        ]
    )
    event = paid(JUNE, line("b", 1000, category="books"), line("t", 1000, category="toys"))
    [intent] = decide_paid_order(event, program, Buyer()).intents
    assert intent.points == 50
    assert intent.description == "50 points for order #o1 (Aardvark week, Zebra days)"


def test_order_paid_bonuses_have_their_own_keys_and_readable_descriptions() -> None:
    at = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    buyer = Buyer(tier="Gold", categories_bought=frozenset({"books"}))
    event = paid(
        at, line("a", 4000, category="shoes"), line("b", 1000, category="books"), order_id="o2"
    )
    release = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)
    expires = datetime(2028, 1, 4, 15, 0, tzinfo=UTC)
    assert decide_paid_order(event, EXAMPLE, buyer).intents == [
        EarnIntent(
            order_earn_key("o2"),
            375,  # shoes 40 x2 x1.5 (Gold) x3 (winter boots) = 360; books 10 x1.5 = 15
            "375 points for order #o2 (Winter boots triple points)",
            "earning:order",
            release,
            expires,
        ),
        EarnIntent(
            order_bonus_key("o2", "promotion:gold-weekend"),
            200,
            "200 bonus points: Gold weekend bonus (order #o2)",
            "promotion:gold-weekend",
            release,
            expires,
        ),
        EarnIntent(
            order_bonus_key("o2", "earning:cross_sell"),
            50,
            "50 bonus points for trying a new category (order #o2)",
            "earning:cross_sell",
            release,
            expires,
        ),
    ]


def test_order_of_excluded_lines_only_earns_nothing() -> None:
    event = paid(JUNE, line("g", 5000, category="gift_card"))
    assert decide_paid_order(event, EXAMPLE, Buyer()).intents == []


def test_decide_paid_order_is_deterministic() -> None:
    event = paid(JUNE, line("a", 2500, qty=2, category="shoes"))
    buyer = Buyer(tier="Silver", categories_bought=frozenset({"x"}))
    assert decide_paid_order(event, EXAMPLE, buyer) == decide_paid_order(event, EXAMPLE, buyer)


def test_no_return_window_releases_at_once_pending_until_the_order_time() -> None:
    [intent] = decide_paid_order(
        paid(JUNE, line("a", 1000)), variant(return_window_days=0), Buyer()
    ).intents
    assert intent.release_at == JUNE
    assert intent.expires_at == datetime(2027, 6, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "window", "expires"),
    [
        pytest.param(
            datetime(2027, 1, 31, 9, 30, tzinfo=UTC),
            0,
            datetime(2027, 2, 28, 9, 30, tzinfo=UTC),
            id="jan31-to-feb28",
        ),
        pytest.param(
            datetime(2028, 1, 31, 9, 30, tzinfo=UTC),
            0,
            datetime(2028, 2, 29, 9, 30, tzinfo=UTC),
            id="jan31-to-feb29-leap",
        ),
        pytest.param(
            datetime(2027, 1, 1, 9, 30, tzinfo=UTC),
            30,  # released Jan 31
            datetime(2027, 2, 28, 9, 30, tzinfo=UTC),
            id="released-jan31",
        ),
    ],
)
def test_lot_expiry_counts_months_from_release_clamped_to_month_end(
    at: datetime, window: int, expires: datetime
) -> None:
    program = variant(return_window_days=window, expiry={"mode": "lot", "months": 1})
    [intent] = decide_paid_order(paid(at, line("a", 1000)), program, Buyer()).intents
    assert intent.release_at == at + timedelta(days=window)
    assert intent.expires_at == expires


@pytest.mark.parametrize("mode", ["never", "inactivity"])
def test_no_lot_expiry_unless_mode_is_lot(mode: str) -> None:
    program = variant(expiry={"mode": mode})
    [intent] = decide_paid_order(paid(JUNE, line("a", 1000)), program, Buyer()).intents
    assert intent.expires_at is None
    assert lot_expiry(program, JUNE) is None


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        pytest.param(datetime(2027, 1, 31), 1, datetime(2027, 2, 28), id="jan31+1"),
        pytest.param(datetime(2028, 1, 31), 1, datetime(2028, 2, 29), id="jan31+1-leap"),
        pytest.param(datetime(2026, 3, 31), 1, datetime(2026, 4, 30), id="mar31+1"),
        pytest.param(datetime(2026, 12, 31), 2, datetime(2027, 2, 28), id="dec31+2"),
        pytest.param(datetime(2026, 11, 30), 3, datetime(2027, 2, 28), id="nov30+3"),
        pytest.param(datetime(2028, 2, 29), 12, datetime(2029, 2, 28), id="feb29+12"),
        pytest.param(datetime(2026, 8, 31), 12, datetime(2027, 8, 31), id="aug31+12"),
        pytest.param(datetime(2026, 12, 15), 1, datetime(2027, 1, 15), id="dec15+1"),
        pytest.param(datetime(2026, 5, 31), 25, datetime(2028, 6, 30), id="may31+25"),
        pytest.param(datetime(2026, 1, 15), 0, datetime(2026, 1, 15), id="plus-0"),
        pytest.param(datetime(2026, 1, 30), 1, datetime(2026, 2, 28), id="jan30+1"),
    ],
)
def test_add_months(start: datetime, months: int, expected: datetime) -> None:
    zone = timezone(timedelta(hours=2))
    moment = start.replace(hour=23, minute=59, second=58, microsecond=7, tzinfo=zone)
    assert add_months(moment, months) == expected.replace(
        hour=23, minute=59, second=58, microsecond=7, tzinfo=zone
    )


# --- order.refunded and order.cancelled ------------------------------------------------------

# Out of promotions, a returning member (bought books before) buys 3 shoes at 1.75 EUR (x2:
# 10.5, floored to 10 points) and a 10 EUR toy (10 points): 20 points and a 50 cross-sell bonus.
ORDER = paid(JUNE, line("a", 175, qty=3, category="shoes"), line("b", 1000, category="toys"))
BUYER = Buyer(categories_bought=frozenset({"books"}))
BONUS_KEY = order_bonus_key("o1", "earning:cross_sell")


def order_record(**record: Any) -> OrderRecord:
    """ORDER's record, as `apply.py` keeps it, with `record`'s fields replaced."""
    return record_of(EXAMPLE, ORDER, BUYER, **record)


def take_back(key: str, points: int) -> TakeBackIntent:
    return TakeBackIntent(
        order_earn_key("o1"),
        key,
        points,
        f"{points} points back for the refund on order #o1",
        "earning:refund",
    )


def bonus_back(event_id: str) -> TakeBackIntent:
    return TakeBackIntent(
        BONUS_KEY,
        idempotency_key("bonus-back", event_id, BONUS_KEY),
        50,
        "50 bonus points back: order #o1 fully returned",
        "earning:refund",
    )


def test_the_order_under_refund() -> None:
    intents = decide_paid_order(ORDER, EXAMPLE, BUYER).intents
    assert [(i.key, i.points) for i in intents] == [(order_earn_key("o1"), 20), (BONUS_KEY, 50)]
    record = record_of(EXAMPLE, ORDER, BUYER)
    assert [(lp.line_id, lp.quantity, lp.points) for lp in record.lines] == [
        ("a", 3, 10),
        ("b", 1, 10),
    ]
    assert record.bonus_keys == {BONUS_KEY: 50}


@pytest.mark.parametrize(
    ("refunded", "lines", "expected"),
    [
        # kept(n) of line a = floor(10 n / 3): 10, 6, 3, 0
        pytest.param({}, [("a", 1)], [take_back(idempotency_key("refund", "r1"), 4)], id="1-of-3"),
        pytest.param(
            {"a": 1}, [("a", 2)], [take_back(idempotency_key("refund", "r1"), 6)], id="then-2-of-3"
        ),
        pytest.param({}, [("a", 2)], [take_back(idempotency_key("refund", "r1"), 7)], id="2-of-3"),
        pytest.param(
            {"a": 2},
            [("a", 1)],
            [take_back(idempotency_key("refund", "r1"), 3)],
            id="then-last-of-3",
        ),
        pytest.param(
            {"a": 2},
            [("a", 5)],
            [take_back(idempotency_key("refund", "r1"), 3)],
            id="more-than-remaining",
        ),
        pytest.param(
            {},
            [("a", 1), ("a", 1)],
            [take_back(idempotency_key("refund", "r1"), 7)],
            id="line-twice",
        ),
        pytest.param(
            {},
            [("a", 1), ("b", 1)],
            [take_back(idempotency_key("refund", "r1"), 14)],
            id="two-lines",
        ),
        pytest.param({}, [("zz", 1)], [], id="unknown-line"),
        pytest.param({}, [("a", 0)], [], id="zero-units"),
        pytest.param({}, [("a", -2)], [], id="negative-units-count-as-zero"),
        pytest.param(
            {},
            [("a", -2), ("a", 1)],
            [take_back(idempotency_key("refund", "r1"), 4)],
            id="negative-then-1",
        ),
        pytest.param(
            {"a": 3},
            [("a", -3), ("b", 1)],
            [take_back(idempotency_key("refund", "r1"), 10), bonus_back("r1")],
            id="negative-does-not-un-refund",
        ),
        pytest.param({"a": 3}, [("a", 1)], [], id="line-already-refunded"),
        pytest.param(
            {},
            [("a", 3), ("b", 1)],
            [take_back(idempotency_key("refund", "r1"), 20), bonus_back("r1")],
            id="full-refund-at-once",
        ),
        pytest.param(
            {"a": 3},
            [("b", 1)],
            [take_back(idempotency_key("refund", "r1"), 10), bonus_back("r1")],
            id="full-refund-last-step",
        ),
        pytest.param(
            {"a": 1, "b": 1},
            [("a", 9)],
            [take_back(idempotency_key("refund", "r1"), 6), bonus_back("r1")],
            id="full-refund-clamped-last-step",
        ),
    ],
)
def test_order_refunded(
    refunded: dict[str, int], lines: list[tuple[str, int]], expected: list[TakeBackIntent]
) -> None:
    assert decide_refund(refund("r1", *lines), order_record(refunded=refunded)).intents == expected


def test_refund_of_a_cancelled_order_gives_nothing() -> None:
    assert decide_refund(refund("r1", ("a", 1)), order_record(cancelled=True)).intents == []


def test_refund_steps_take_back_the_whole_line_and_the_bonus_once() -> None:
    refunded: dict[str, int] = {}
    taken = []
    for n, (line_id, units) in enumerate([("a", 1), ("b", 1), ("a", 1), ("a", 1)]):
        intents = decide_refund(
            refund(f"r{n}", (line_id, units)), order_record(refunded=refunded)
        ).intents
        taken.append([(i.earn_key, i.points) for i in intents])
        refunded[line_id] = refunded.get(line_id, 0) + units
    assert taken == [
        [(order_earn_key("o1"), 4)],
        [(order_earn_key("o1"), 10)],
        [(order_earn_key("o1"), 3)],
        [(order_earn_key("o1"), 3), (BONUS_KEY, 50)],
    ]


@pytest.mark.parametrize(
    ("refunded", "points"),
    [
        pytest.param({}, 20, id="nothing-refunded"),
        pytest.param({"a": 1}, 16, id="after-partial-refund"),  # kept(2) = 6, plus b's 10
        pytest.param({"a": 3}, 10, id="after-line-refunded"),
    ],
)
def test_order_cancelled_takes_back_what_remains_and_the_bonuses(
    refunded: dict[str, int], points: int
) -> None:
    assert decide_refund(cancel("c1"), order_record(refunded=refunded)).intents == [
        TakeBackIntent(
            order_earn_key("o1"),
            idempotency_key("cancel", "c1"),
            points,
            f"{points} points back: order #o1 was cancelled",
            "earning:cancel",
        ),
        bonus_back("c1"),
    ]


def test_cancelling_a_cancelled_order_gives_nothing() -> None:
    assert decide_refund(cancel("c2"), order_record(cancelled=True)).intents == []


def test_cancel_of_an_order_without_bonuses() -> None:
    record = record_of(EXAMPLE, ORDER, Buyer())
    assert record.bonus_keys == {}
    assert decide_refund(cancel("c1"), record).intents == [
        TakeBackIntent(
            order_earn_key("o1"),
            idempotency_key("cancel", "c1"),
            20,
            "20 points back: order #o1 was cancelled",
            "earning:cancel",
        )
    ]


def fully_refunded() -> OrderRecord:
    """The record after a refund of every unit, as `apply.py` stores it (`after_refund`)."""
    before = order_record(refunded={"a": 3})
    full = refund("r1", ("b", 1))
    assert decide_refund(full, before).intents == [
        take_back(idempotency_key("refund", "r1"), 10),
        bonus_back("r1"),
    ]
    record = after_refund(before, full)
    assert (record.refunded, record.bonuses_returned) == ({"a": 3, "b": 1}, True)
    return record


def test_cancel_after_a_full_refund_takes_back_nothing_more() -> None:
    assert decide_refund(cancel("c1"), fully_refunded()).intents == []


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([("a", 1)], id="a-again"),
        pytest.param([("a", 3), ("b", 1)], id="the-same-refund-with-a-new-id"),
        pytest.param([("zz", 1)], id="unknown-line"),
        pytest.param([], id="no-lines"),
    ],
)
def test_refund_after_a_full_refund_takes_back_nothing_more(lines: list[tuple[str, int]]) -> None:
    assert decide_refund(refund("r9", *lines), fully_refunded()).intents == []


def test_bonuses_go_back_once_through_refunds_then_a_cancellation() -> None:
    """Every event applied to the record `apply.py` keeps: the bonuses go back with the refund
    that leaves no item kept, and neither later refunds nor the cancellation take them again."""
    order = record_of(EXAMPLE, ORDER, BUYER)
    taken = []
    for event in [
        refund("r1", ("a", 2)),
        refund("r2", ("b", 1), ("a", -5)),
        refund("r3", ("a", 7)),
        refund("r4", ("a", 1), ("b", 1)),
        cancel("c1"),
        refund("r5", ("a", 1)),
    ]:
        taken.append([(i.key, i.points) for i in decide_refund(event, order).intents])
        order = after_refund(order, event)
    assert taken == [
        [(idempotency_key("refund", "r1"), 7)],
        [(idempotency_key("refund", "r2"), 10)],
        [
            (idempotency_key("refund", "r3"), 3),
            (idempotency_key("bonus-back", "r3", BONUS_KEY), 50),
        ],
        [],
        [],
        [],
    ]
    assert (order.cancelled, order.bonuses_returned, order.items_kept()) == (True, True, 0)


def test_cancel_while_items_are_kept_marks_the_bonuses_returned() -> None:
    record = order_record(refunded={"a": 1})
    assert record.bonuses_returned is False
    after = after_refund(record, cancel("c1"))
    assert (after.cancelled, after.bonuses_returned, after.items_kept()) == (True, True, 3)


# --- actions ---------------------------------------------------------------------------------

MAY = datetime(2026, 5, 3, 8, 0, tzinfo=UTC)


NO_COUNTS = ActionCounts()


def earned(
    name: str,
    counts: ActionCounts = NO_COUNTS,
    *,
    at: datetime = MAY,
    birthday: date | None = None,
    event_birthday: date | None = None,
) -> list[EarnIntent]:
    """What the action earns, `birthday` being the one on record."""
    return action_earns(EXAMPLE, action(name, at, birthday=event_birthday), counts, birthday)


def test_signup_pays_with_a_lot_expiry_and_no_pending() -> None:
    assert earned("signup") == [
        EarnIntent(
            idempotency_key("action", "e1"),
            100,
            "Welcome to Acme Rewards",
            "action:signup",
            None,
            datetime(2027, 5, 3, 8, 0, tzinfo=UTC),
        )
    ]


ACTION_CASES = [
    pytest.param("signup", ActionCounts(lifetime=0), 100, id="signup-first"),
    pytest.param("signup", ActionCounts(lifetime=1), None, id="signup-lifetime-cap"),
    pytest.param(
        "review.published",
        ActionCounts(today=1, this_month=1, lifetime=1),
        25,
        id="review-2nd-today",
    ),
    pytest.param(
        "review.published",
        ActionCounts(today=2, this_month=2, lifetime=2),
        None,
        id="review-day-cap",
    ),
    pytest.param(
        "review.published",
        ActionCounts(today=0, this_month=9, lifetime=30),
        25,
        id="review-10th-month",
    ),
    pytest.param(
        "review.published",
        ActionCounts(today=0, this_month=10, lifetime=30),
        None,
        id="review-month-cap",
    ),
    pytest.param("social.shared", ActionCounts(), 10, id="share"),
    pytest.param(
        "social.shared", ActionCounts(today=1, this_month=1, lifetime=1), None, id="share-day-cap"
    ),
    pytest.param("profile.completed", ActionCounts(lifetime=1), None, id="profile-once"),
    pytest.param("quiz.completed", ActionCounts(), 15, id="custom-action"),
    pytest.param(
        "quiz.completed", ActionCounts(today=0, this_month=0, lifetime=7), 15, id="custom-new-month"
    ),
    pytest.param(
        "quiz.completed", ActionCounts(this_month=1, lifetime=1), None, id="custom-month-cap"
    ),
    pytest.param("newsletter.opened", ActionCounts(), None, id="unknown-action"),
    pytest.param("Signup", ActionCounts(), None, id="action-names-are-exact"),
]


@pytest.mark.parametrize(("name", "counts", "points"), ACTION_CASES)
def test_action_caps(name: str, counts: ActionCounts, points: int | None) -> None:
    intents = earned(name, counts)
    if points is None:
        assert intents == []
    else:
        [intent] = intents
        assert (intent.key, intent.points, intent.source) == (
            idempotency_key("action", "e1"),
            points,
            f"action:{name}",
        )


BIRTHDAY_CASES = [
    pytest.param({"birthday": date(1990, 5, 17)}, 250, id="birthday-month"),
    pytest.param(
        {"birthday": date(1990, 5, 17), "at": datetime(2026, 5, 31, 23, 59, tzinfo=UTC)},
        250,
        id="last-minute-of-month",
    ),
    pytest.param(
        {"birthday": date(1990, 5, 17), "at": datetime(2026, 6, 1, tzinfo=UTC)},
        None,
        id="month-after",
    ),
    pytest.param(
        {"birthday": date(1990, 5, 17), "at": datetime(2026, 4, 30, 23, 59, tzinfo=UTC)},
        None,
        id="month-before",
    ),
    pytest.param(
        {"birthday": date(1990, 5, 17), "counts": ActionCounts(this_year=1, lifetime=1)},
        None,
        id="already-this-year",
    ),
    pytest.param(
        {"birthday": date(1990, 5, 17), "counts": ActionCounts(this_year=0, lifetime=5)},
        250,
        id="again-next-year",
    ),
    pytest.param({}, None, id="no-birthday-on-record"),
    pytest.param({"event_birthday": date(1990, 5, 17)}, 250, id="birthday-given-by-event"),
    pytest.param(
        {"birthday": date(2000, 2, 29), "at": datetime(2027, 2, 10, tzinfo=UTC)},
        250,
        id="feb29-in-common-year",
    ),
]


@pytest.mark.parametrize(("kw", "points"), BIRTHDAY_CASES)
def test_birthday(kw: dict[str, Any], points: int | None) -> None:
    kw = dict(kw)
    counts = kw.pop("counts", ActionCounts())
    intents = earned("birthday", counts, **kw)
    assert [i.points for i in intents] == ([] if points is None else [points])
    assert all(i.description == "Happy birthday from Acme" for i in intents)


@pytest.mark.parametrize(
    ("name", "counts", "birthday", "reason"),
    [
        pytest.param(
            "nope", ActionCounts(), None, "the program pays nothing for 'nope'", id="unknown"
        ),
        pytest.param("birthday", ActionCounts(), None, "no birthday on record", id="no-birthday"),
        pytest.param(
            "birthday", ActionCounts(), date(1990, 1, 1), "not the birthday month", id="month"
        ),
        pytest.param(
            "birthday",
            ActionCounts(this_year=1),
            date(1990, 5, 1),
            "birthday already rewarded this year",
            id="year",
        ),
        pytest.param(
            "review.published", ActionCounts(today=2), None, "per_day cap of 2 reached", id="day"
        ),
        pytest.param(
            "quiz.completed",
            ActionCounts(this_month=1),
            None,
            "per_month cap of 1 reached",
            id="month-cap",
        ),
        pytest.param(
            "signup", ActionCounts(lifetime=1), None, "lifetime cap of 1 reached", id="lifetime"
        ),
        pytest.param("signup", ActionCounts(), None, "pays", id="pays"),
    ],
)
def test_action_decision_reasons(
    name: str, counts: ActionCounts, birthday: date | None, reason: str
) -> None:
    decision = decide_action(EXAMPLE, action(name, MAY), counts, birthday)
    assert decision.reason == reason
    assert decision.pays == (reason == "pays")


def test_action_without_lot_expiry() -> None:
    [intent] = action_earns(
        variant(expiry={"mode": "never"}), action("signup", MAY), NO_COUNTS, None
    )
    assert intent.expires_at is None and intent.release_at is None


GOLD_WEEKEND_AT = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # Gold weekend: a 200 bonus per order
GOLD_BONUS_KEY = order_bonus_key("o1", "promotion:gold-weekend")


def test_bonuses_stay_while_excluded_units_are_kept() -> None:
    buyer = Buyer(tier="Gold")
    event = paid(
        GOLD_WEEKEND_AT, line("a", 6000, category="bags"), line("g", 5000, category="gift_card")
    )
    assert GOLD_BONUS_KEY in [i.key for i in decide_paid_order(event, EXAMPLE, buyer).intents]
    record = record_of(EXAMPLE, event, buyer)
    assert [(lp.line_id, lp.quantity, lp.points) for lp in record.lines] == [
        ("a", 1, 90),  # 60 EUR x1.5 (Gold)
        ("g", 1, 0),
    ]
    # the bag goes back, the gift card is kept: so is the bonus
    first = refund("r1", ("a", 1))
    intents = decide_refund(first, record).intents
    assert [(i.earn_key, i.points) for i in intents] == [(order_earn_key("o1"), 90)]
    # then the gift card goes back too: nothing of the order is kept, the bonus goes back
    record = after_refund(record, first)
    intents = decide_refund(refund("r2", ("g", 1)), record).intents
    assert [(i.earn_key, i.key, i.points) for i in intents] == [
        (GOLD_BONUS_KEY, idempotency_key("bonus-back", "r2", GOLD_BONUS_KEY), 200)
    ]


def test_an_order_of_gift_cards_only_earns_no_bonus() -> None:
    buyer = Buyer(tier="Gold", categories_bought=frozenset({"shoes"}))
    event = paid(GOLD_WEEKEND_AT, line("g", 5000, qty=5, category="gift_card"))
    assert decide_paid_order(event, EXAMPLE, buyer).intents == []
    record = record_of(EXAMPLE, event, buyer)
    assert record.bonus_keys == {}
    assert [(lp.line_id, lp.quantity, lp.points) for lp in record.lines] == [("g", 5, 0)]
    for refunded in [[("g", 1)], [("g", 5)]]:
        assert decide_refund(refund("r1", *refunded), record).intents == []
    assert decide_refund(cancel("c1"), record).intents == []


def test_shipping_and_tax_are_not_items_a_refund_keeps_or_names() -> None:
    """Charges earn where the program includes them, but "kept" counts items only: refunding
    every item takes the bonuses back though shipping and tax stay; a refund cannot name them,
    a cancellation takes them back."""
    doc = tomllib.loads(EXAMPLE_TEXT)
    doc["earning"].update(include_shipping=True, include_tax=True)
    program = parse_program(doc)
    buyer = Buyer(tier="Gold")
    event = OrderPaid(
        event_id="paid-o1",
        member_id="m1",
        occurred_at=GOLD_WEEKEND_AT,
        order_id="o1",
        currency="EUR",
        lines=[line("a", 1000, qty=2)],
        shipping_minor=500,
        tax_minor=300,
    )
    intents = decide_paid_order(event, program, buyer).intents
    assert [(i.key, i.points) for i in intents] == [
        (order_earn_key("o1"), 41),
        (GOLD_BONUS_KEY, 200),
    ]
    record = record_of(program, event, buyer)
    assert [(lp.line_id, lp.quantity, lp.points, lp.charge) for lp in record.lines] == [
        ("a", 2, 30, False),  # 20 EUR x1.5 (Gold)
        ("shipping", 1, 7, True),  # 5 EUR x1.5, floored
        ("tax", 1, 4, True),  # 3 EUR x1.5, floored
    ]
    assert record.items_kept() == 2
    taken = []
    for refund_event in [
        refund("r1", ("shipping", 1), ("tax", 1)),
        refund("r2", ("a", 2)),
        refund("r3", ("shipping", 1)),
        cancel("c1"),
    ]:
        out = decide_refund(refund_event, record).intents
        taken.append([(i.earn_key, i.key, i.points) for i in out])
        record = after_refund(record, refund_event)
    assert taken == [
        [],
        [
            (order_earn_key("o1"), idempotency_key("refund", "r2"), 30),
            (GOLD_BONUS_KEY, idempotency_key("bonus-back", "r2", GOLD_BONUS_KEY), 200),
        ],
        [],
        [
            (order_earn_key("o1"), idempotency_key("cancel", "c1"), 11)
        ],  # shipping and tax, the bonus is already back
    ]
