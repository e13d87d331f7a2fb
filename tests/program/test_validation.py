"""Program documents: the example loads; every invalid document is refused naming its field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pointguard.errors import ProgramInvalid
from pointguard.program.document.schema import (
    FixedDiscount,
    FreeProduct,
    FreeShipping,
    PercentOff,
    PointsPlusCash,
    Program,
)
from pointguard.program.document.validate import parse_program

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "program.toml"

T0 = datetime(2026, 6, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 8, tzinfo=UTC)


def base(**top: Any) -> dict[str, Any]:
    """A small valid document as a mapping; keyword arguments replace top-level fields."""
    doc: dict[str, Any] = {
        "name": "Test",
        "currency": "EUR",
        "earning": {"points_per_major_unit": "1"},
        "tiers": {
            "levels": [
                {"name": "Bronze", "threshold": 0},
                {"name": "Silver", "threshold": 50000, "multiplier": "1.25"},
                {"name": "Gold", "threshold": 150000, "multiplier": "1.5"},
            ]
        },
    }
    doc.update(copy.deepcopy(top))
    return doc


def promo(**fields: Any) -> dict[str, Any]:
    return {"id": "p", "name": "Promo", "starts_at": T0, "ends_at": T1, **fields}


def reward(**fields: Any) -> dict[str, Any]:
    """A reward, by default a 5 EUR fixed discount for 500 points."""
    doc = {"type": "fixed_discount", "id": "r", "name": "R", "cost_points": 500}
    if fields.get("type", "fixed_discount") == "fixed_discount":
        doc["amount_minor"] = 500
    return doc | fields


def percent_off(percent: int) -> dict[str, Any]:
    return reward(type="percent_off", percent=percent, max_discount_minor=5000)


def points_plus_cash(share: int) -> dict[str, Any]:
    return reward(
        type="points_plus_cash",
        amount_minor=100,
        min_points=500,
        max_share_percent=share,
    )


def problems_of(source: str | dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ProgramInvalid) as caught:
        parse_program(source)
    assert caught.value.problems, "ProgramInvalid without problems"
    assert caught.value.code == "program_invalid"
    return caught.value.problems


def fields_of(source: str | dict[str, Any]) -> list[str]:
    return [field for field, _ in problems_of(source)]


# --- the example ---------------------------------------------------------------------------


def test_example_program_loads_with_every_feature() -> None:
    program = parse_program(EXAMPLE.read_text())
    assert isinstance(program, Program)
    assert program.name == "Acme Rewards"
    assert program.currency == "EUR"
    assert program.rounding == "floor"
    assert program.return_window_days == 30
    assert program.earning.points_per_major_unit == Decimal(1)
    assert program.earning.category_multipliers == {"shoes": Decimal(2), "outlet": Decimal("0.5")}
    assert program.earning.sku_multipliers == {"SOCK-RED": Decimal(3)}
    assert [p.id for p in program.promotions] == ["black-friday", "gold-weekend", "winter-boots"]
    assert program.promotions[0].starts_at == datetime(2026, 11, 27, tzinfo=UTC)
    assert [a.event for a in program.actions] == [
        "signup",
        "birthday",
        "review.published",
        "social.shared",
        "profile.completed",
        "quiz.completed",
    ]
    assert [t.name for t in program.tiers.levels] == ["Bronze", "Silver", "Gold", "Platinum"]
    assert program.tiers.levels[1].multiplier == Decimal("1.25")
    assert [type(r) for r in program.rewards] == [
        FixedDiscount,
        PercentOff,
        FreeShipping,
        FreeProduct,
        PointsPlusCash,
        FixedDiscount,
    ]
    assert program.referrals is not None and len(program.referrals.ladder) == 2
    assert len(program.challenges) == 5
    assert program.leaderboard.enabled
    assert program.chance.lotteries[0].prizes_points == [10000, 2500, 1000]
    assert program.expiry.mode == "lot" and program.expiry.months == 12


def test_minimal_mapping_loads_with_defaults() -> None:
    program = parse_program(
        {"name": "x", "currency": "EUR", "earning": {"points_per_major_unit": 1}}
    )
    assert program.rounding == "floor"
    assert program.minor_units_per_major == 100
    assert program.earning.excluded_categories == ["gift_card"]
    assert program.expiry.months == 12


def test_decimal_from_toml_float_is_the_written_decimal() -> None:
    """'1.1 means exactly 1.1': a TOML float becomes the decimal as written, not binary 1.1."""
    text = 'name = "x"\ncurrency = "EUR"\n[earning]\npoints_per_major_unit = 1.1\n'
    assert parse_program(text).earning.points_per_major_unit == Decimal("1.1")


# --- one problem, its field named exactly ----------------------------------------------------


INVALID = [
    pytest.param(
        base(earning={"points_per_major_unit": "-1"}),
        "$.earning.points_per_major_unit",
        id="negative-points-per-major-unit",
    ),
    pytest.param(
        base(earning={"points_per_major_unit": "1", "category_multipliers": {"shoes": "-0.5"}}),
        "$.earning.category_multipliers.shoes",
        id="negative-category-multiplier",
    ),
    pytest.param(
        base(earning={"points_per_major_unit": "1", "sku_multipliers": {"SOCK": "-2"}}),
        "$.earning.sku_multipliers.SOCK",
        id="negative-sku-multiplier",
    ),
    pytest.param(
        base(earning={"points_per_major_unit": "1", "cross_sell_bonus_points": -1}),
        "$.earning.cross_sell_bonus_points",
        id="negative-cross-sell",
    ),
    pytest.param(
        base(
            tiers={
                "levels": [
                    {"name": "Bronze", "threshold": 0},
                    {"name": "Silver", "threshold": 50000},
                    {"name": "Gold", "threshold": 50000},
                ]
            }
        ),
        "$.tiers.levels[2].threshold",
        id="tier-threshold-equal-to-previous",
    ),
    pytest.param(
        base(
            tiers={
                "levels": [
                    {"name": "Bronze", "threshold": 0},
                    {"name": "Silver", "threshold": 50000},
                    {"name": "Gold", "threshold": 40000},
                ]
            }
        ),
        "$.tiers.levels[2].threshold",
        id="tier-threshold-below-previous",
    ),
    pytest.param(
        base(tiers={"levels": [{"name": "Bronze", "threshold": -1}]}),
        "$.tiers.levels[0].threshold",
        id="negative-tier-threshold",
    ),
    pytest.param(
        base(rewards=[{"type": "cashback", "id": "r", "name": "R", "cost_points": 1}]),
        "$.rewards[0].type",
        id="unknown-reward-type",
    ),
    pytest.param(
        base(promotions=[promo(starts_at=T1, ends_at=T0)]),
        "$.promotions[0].ends_at",
        id="promotion-ends-before-start",
    ),
    pytest.param(
        base(promotions=[promo(starts_at=T0, ends_at=T0)]),
        "$.promotions[0].ends_at",
        id="promotion-ends-at-start",
    ),
    pytest.param(
        base(promotions=[promo(starts_at=datetime(2026, 6, 1))]),
        "$.promotions[0].starts_at",
        id="naive-starts-at",
    ),
    pytest.param(
        base(promotions=[promo(ends_at=datetime(2026, 6, 8))]),
        "$.promotions[0].ends_at",
        id="naive-ends-at",
    ),
    pytest.param(
        base(promotions=[promo(multiplier="-2")]),
        "$.promotions[0].multiplier",
        id="negative-promotion-multiplier",
    ),
    pytest.param(
        base(promotions=[promo(max_points_per_member=0)]),
        "$.promotions[0].max_points_per_member",
        id="zero-promotion-cap",
    ),
    pytest.param(
        base(promotions=[promo(tiers=["Diamond"])]),
        "$.promotions[0].tiers",
        id="promotion-unknown-tier",
    ),
    pytest.param(
        base(rewards=[reward(tiers=["Gold", "Diamond"])]),
        "$.rewards[0].tiers",
        id="reward-unknown-tier",
    ),
    pytest.param(base(rewards=[percent_off(0)]), "$.rewards[0].percent", id="percent-off-0"),
    pytest.param(base(rewards=[percent_off(101)]), "$.rewards[0].percent", id="percent-off-101"),
    pytest.param(
        base(rewards=[points_plus_cash(0)]),
        "$.rewards[0].max_share_percent",
        id="points-plus-cash-share-0",
    ),
    pytest.param(
        base(rewards=[points_plus_cash(101)]),
        "$.rewards[0].max_share_percent",
        id="points-plus-cash-share-101",
    ),
    pytest.param(
        base(rewards=[reward(cost_points=0)]), "$.rewards[0].cost_points", id="free-reward"
    ),
    pytest.param(
        base(promotions=[promo(), promo(name="Again")]), "$.promotions", id="duplicate-promotion"
    ),
    pytest.param(
        base(rewards=[reward(), reward(name="Again")]), "$.rewards", id="duplicate-reward"
    ),
    pytest.param(
        base(
            actions=[
                {"event": "signup", "points": 100, "description": "Hi"},
                {"event": "signup", "points": 50, "description": "Hi again"},
            ]
        ),
        "$.actions",
        id="duplicate-action",
    ),
    pytest.param(
        base(
            tiers={
                "levels": [
                    {"name": "Bronze", "threshold": 0},
                    {"name": "Bronze", "threshold": 100},
                ]
            }
        ),
        "$.tiers.levels",
        id="duplicate-tier",
    ),
    pytest.param(
        base(actions=[{"event": "signup", "points": 100, "description": "Hi", "lifetime": 0}]),
        "$.actions[0].lifetime",
        id="zero-action-cap",
    ),
    pytest.param(base(currency="eur"), "$.currency", id="lowercase-currency"),
    pytest.param(base(currency="EU1"), "$.currency", id="digit-in-currency"),
    pytest.param(
        base(
            chance={
                "lotteries": [
                    {
                        "id": "d",
                        "name": "Draw",
                        "entry_cost_points": 10,
                        "entries_close_at": datetime(2026, 12, 20),
                        "prizes_points": [100],
                    }
                ]
            }
        ),
        "$.chance.lotteries[0].entries_close_at",
        id="naive-lottery-close",
    ),
    pytest.param(base(minor_units_per_major=3), "$.minor_units_per_major", id="odd-minor-units"),
    pytest.param(base(return_window_days=-1), "$.return_window_days", id="negative-window"),
    pytest.param(base(expiry={"months": 0}), "$.expiry.months", id="zero-expiry-months"),
]


@pytest.mark.parametrize(("doc", "field"), INVALID)
def test_invalid_document_names_the_field(doc: dict[str, Any], field: str) -> None:
    assert fields_of(doc) == [field]


def test_duplicate_ids_name_the_repeated_value() -> None:
    [(field, message)] = problems_of(base(promotions=[promo(), promo()]))
    assert field == "$.promotions"
    assert "'p'" in message and "twice" in message


def test_overlapping_tier_message_names_both_tiers() -> None:
    doc = base(
        tiers={"levels": [{"name": "Bronze", "threshold": 10}, {"name": "Silver", "threshold": 10}]}
    )
    [(field, message)] = problems_of(doc)
    assert field == "$.tiers.levels[1].threshold"
    assert "'Silver'" in message and "'Bronze'" in message


def test_naive_start_and_end_both_reported_and_order_not_compared() -> None:
    doc = base(promotions=[promo(starts_at=datetime(2026, 6, 8), ends_at=datetime(2026, 6, 1))])
    assert problems_of(doc) == [
        ("$.promotions[0].starts_at", "needs a time zone"),
        ("$.promotions[0].ends_at", "needs a time zone"),
    ]


def test_naive_datetime_in_toml_text() -> None:
    text = """
name = "x"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[[promotions]]
id = "p"
name = "P"
starts_at = 2026-06-01T00:00:00
ends_at = 2026-06-08T00:00:00Z
"""
    assert problems_of(text) == [("$.promotions[0].starts_at", "needs a time zone")]


# --- msgspec's refusals: types, unknown fields, missing fields ------------------------------


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        pytest.param(
            base(loyalty_level=3),
            "$",
            "Object contains unknown field `loyalty_level`",
            id="unknown-top-level-field",
        ),
        pytest.param(
            base(earning={"points_per_major_unit": "1", "points_per_euro": "2"}),
            "$.earning",
            "Object contains unknown field `points_per_euro`",
            id="unknown-earning-field",
        ),
        pytest.param(
            base(promotions=[promo(multipler="2")]),
            "$.promotions[0]",
            "Object contains unknown field `multipler`",
            id="unknown-promotion-field",
        ),
        pytest.param(
            base(return_window_days="30"),
            "$.return_window_days",
            "Expected `int`, got `str`",
            id="string-for-int",
        ),
        pytest.param(
            base(rewards=[reward(cost_points=1.5)]),
            "$.rewards[0].cost_points",
            "Expected `int`, got `float`",
            id="float-for-int",
        ),
        pytest.param(
            base(earning={"points_per_major_unit": "one"}),
            "$.earning.points_per_major_unit",
            "Invalid decimal string",
            id="bad-decimal",
        ),
        pytest.param(
            base(rounding="up"),
            "$.rounding",
            "Invalid enum value 'up'",
            id="unknown-rounding",
        ),
        pytest.param(
            base(rewards=[reward(type="percent_off", max_discount_minor=100)]),
            "$.rewards[0]",
            "Object missing required field `percent`",
            id="missing-reward-field",
        ),
        pytest.param(
            {"name": "x", "currency": "EUR"},
            "$",
            "Object missing required field `earning`",
            id="missing-earning",
        ),
    ],
)
def test_decoding_refusals_name_the_field(doc: dict[str, Any], field: str, message: str) -> None:
    assert problems_of(doc) == [(field, message)]


def test_unknown_reward_type_message() -> None:
    doc = base(rewards=[{"type": "cashback", "id": "r", "name": "R", "cost_points": 1}])
    assert problems_of(doc) == [("$.rewards[0].type", "Invalid value 'cashback'")]


def test_unknown_reward_type_in_later_position() -> None:
    doc = base(rewards=[reward(), {"type": "nope", "id": "x", "name": "X", "cost_points": 1}])
    assert fields_of(doc) == ["$.rewards[1].type"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name = ", id="truncated"),
        pytest.param('name = "x"\nname = "y"\n', id="duplicate-key"),
        pytest.param("[earning\n", id="unclosed-table"),
    ],
)
def test_invalid_toml_text(text: str) -> None:
    [(field, message)] = problems_of(text)
    assert field == "$"
    assert message.startswith("not valid TOML: ")


def test_problem_fields_appear_in_the_error_message() -> None:
    with pytest.raises(ProgramInvalid) as caught:
        parse_program(base(return_window_days=-5))
    assert "$.return_window_days: must not be negative, got -5" in str(caught.value)


# --- several problems at once ----------------------------------------------------------------


def test_collects_every_problem_of_a_document_at_once() -> None:
    doc = base(
        currency="Euro",
        earning={
            "points_per_major_unit": "-1",
            "category_multipliers": {"outlet": "-0.5"},
        },
        tiers={
            "levels": [
                {"name": "Bronze", "threshold": 0},
                {"name": "Silver", "threshold": 0},
            ]
        },
        promotions=[promo(ends_at=T0, tiers=["Diamond"])],
        rewards=[percent_off(101), points_plus_cash(0), reward(id="r")],
    )
    assert sorted(fields_of(doc)) == sorted(
        [
            "$.currency",
            "$.earning.points_per_major_unit",
            "$.earning.category_multipliers.outlet",
            "$.promotions[0].ends_at",
            "$.promotions[0].tiers",
            "$.tiers.levels[1].threshold",
            "$.rewards",  # the id "r" three times: reported twice
            "$.rewards",
            "$.rewards[0].percent",
            "$.rewards[1].max_share_percent",
        ]
    )


def test_wrong_types_and_wrong_values_are_reported_together() -> None:
    """The promise of docs/program.md: an unknown field, a negative return window and a bad
    rounding mode are three problems in one answer, not one per attempt."""
    text = 'name = "x"\ncurrency = "EUR"\nrounding = "up"\nreturn_window_days = -3\nbonus = 1\n'
    text += '[earning]\npoints_per_major_unit = "1"\n'
    assert sorted(problems_of(text)) == [
        ("$", "Object contains unknown field `bonus`"),
        ("$.return_window_days", "must not be negative, got -3"),
        ("$.rounding", "Invalid enum value 'up'"),
    ]


def test_every_decoding_refusal_is_reported_with_the_value_checks() -> None:
    doc = base(
        earning={"points_per_major_unit": "-1", "points_per_euro": "2"},
        promotions=[promo(multipler="2"), promo(id="q", ends_at=T0)],
        rewards=[reward(cost_points=1.5), {"type": "cashback", "id": "c", "name": "C"}],
        expiry={"months": "twelve"},
    )
    assert sorted(problems_of(doc)) == [
        ("$.earning", "Object contains unknown field `points_per_euro`"),
        ("$.earning.points_per_major_unit", "must not be negative, got -1"),
        ("$.expiry.months", "Expected `int`, got `str`"),
        ("$.promotions[0]", "Object contains unknown field `multipler`"),
        ("$.promotions[1].ends_at", "must be after starts_at"),
        ("$.rewards[0].cost_points", "Expected `int`, got `float`"),
        ("$.rewards[1].type", "Invalid value 'cashback'"),
    ]


def test_a_missing_required_part_is_reported_with_the_other_decoding_refusals() -> None:
    assert sorted(problems_of({"currency": "EUR", "rounding": "up", "earning": {}})) == [
        ("$", "Object missing required field `name`"),
        ("$.earning", "Object missing required field `points_per_major_unit`"),
        ("$.rounding", "Invalid enum value 'up'"),
    ]


def test_tiers_that_do_not_decode_do_not_make_every_tier_reference_unknown() -> None:
    doc = base(
        tiers={"levels": [{"name": "Bronze", "threshold": "0"}, {"name": "Gold", "threshold": 5}]},
        promotions=[promo(tiers=["Gold"])],
    )
    assert problems_of(doc) == [("$.tiers.levels[0].threshold", "Expected `int`, got `str`")]


# --- boundaries that are valid ---------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(base(rewards=[percent_off(1)]), id="percent-off-1"),
        pytest.param(base(rewards=[percent_off(100)]), id="percent-off-100"),
        pytest.param(base(rewards=[points_plus_cash(1)]), id="share-1"),
        pytest.param(base(rewards=[points_plus_cash(100)]), id="share-100"),
        pytest.param(
            base(promotions=[promo(ends_at=T0.replace(microsecond=1))]), id="one-microsecond-promo"
        ),
        pytest.param(base(earning={"points_per_major_unit": "0"}), id="zero-rate"),
        pytest.param(
            base(earning={"points_per_major_unit": "1", "category_multipliers": {"a": "0"}}),
            id="zero-multiplier",
        ),
        pytest.param(
            base(tiers={"levels": [{"name": "A", "threshold": 0}, {"name": "B", "threshold": 1}]}),
            id="tiers-one-apart",
        ),
        pytest.param(base(promotions=[promo(tiers=["Gold", "Silver"])]), id="promo-known-tiers"),
        pytest.param(
            base(promotions=[promo(starts_at="2026-06-01T00:00:00+02:00", ends_at=T1)]),
            id="iso-string-with-offset",
        ),
    ],
)
def test_valid_boundaries_load(doc: dict[str, Any]) -> None:
    assert isinstance(parse_program(doc), Program)


# --- non-finite decimals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earning", "field"),
    [
        pytest.param({"points_per_major_unit": "NaN"}, "$.earning.points_per_major_unit", id="nan"),
        pytest.param(
            {"points_per_major_unit": "sNaN"}, "$.earning.points_per_major_unit", id="snan"
        ),
        pytest.param(
            {"points_per_major_unit": "Infinity"}, "$.earning.points_per_major_unit", id="inf"
        ),
        pytest.param(
            {"points_per_major_unit": "-Infinity"}, "$.earning.points_per_major_unit", id="-inf"
        ),
        pytest.param(
            {"points_per_major_unit": "1", "category_multipliers": {"shoes": "NaN"}},
            "$.earning.category_multipliers.shoes",
            id="nan-category-multiplier",
        ),
        pytest.param(
            {"points_per_major_unit": "1", "sku_multipliers": {"SOCK": "Infinity"}},
            "$.earning.sku_multipliers.SOCK",
            id="inf-sku-multiplier",
        ),
    ],
)
def test_non_finite_decimal_is_refused_naming_the_field(
    earning: dict[str, Any], field: str
) -> None:
    """Once crashed with decimal.InvalidOperation (NaN) or was accepted (Infinity)."""
    [(got, message)] = problems_of(base(earning=earning))
    assert got == field
    assert "finite" in message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_non_finite_toml_float_is_refused(value: str) -> None:
    text = f'name = "x"\ncurrency = "EUR"\n[earning]\npoints_per_major_unit = {value}\n'
    assert fields_of(text) == ["$.earning.points_per_major_unit"]


def test_non_finite_promotion_and_tier_multipliers_are_refused() -> None:
    doc = base(
        promotions=[promo(multiplier="NaN")],
        tiers={"levels": [{"name": "Bronze", "threshold": 0, "multiplier": "Infinity"}]},
    )
    assert sorted(fields_of(doc)) == ["$.promotions[0].multiplier", "$.tiers.levels[0].multiplier"]


# --- the fraud guard's section ---------------------------------------------------------------


def test_the_guard_section_names_every_bad_limit() -> None:
    doc = base(
        guard={
            "max_orders_per_hour": 0,
            "max_members_per_card": -2,
            "max_refunded_percent": 150,
            "max_reviews_per_day": 0,
        }
    )
    assert sorted(fields_of(doc)) == [
        "$.guard.max_members_per_card",
        "$.guard.max_orders_per_hour",
        "$.guard.max_refunded_percent",
        "$.guard.max_reviews_per_day",
    ]
    assert problems_of(base(guard={"max_orders_per_minute": 3})) == [
        ("$.guard", "Object contains unknown field `max_orders_per_minute`")
    ]
    assert parse_program(base(guard={"enabled": False})).guard.enabled is False
