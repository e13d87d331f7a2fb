"""Loading and checking program documents: every problem is reported at once, each with the
field it is in.

`parse_program` turns TOML text or a decoded mapping into a `Program`. It first walks the
mapping against the document's types (`_shape`), so that every wrong type, unknown field,
missing field and unknown reward type is found, not only the first one msgspec stops at; the
messages and paths are msgspec's (`$.rewards[2].type: Invalid value 'cashback'`). The checks of
values below (`program_problems`) then run on the parts that decoded, with a part that did not
left at its default: a merchant fixing a document sees every problem in one go.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

import msgspec

from pointguard.errors import ProgramInvalid
from pointguard.program.document.schema import PercentOff, PointsPlusCash, Program

Problems = list[tuple[str, str]]

# A part of the document that does not decode: left out, so that its default stands in.
_WRONG = object()


def parse_program(source: str | Mapping[str, Any]) -> Program:
    """A valid `Program` from TOML text or a mapping, or `ProgramInvalid` naming the fields."""
    try:
        data = tomllib.loads(source) if isinstance(source, str) else dict(source)
    except tomllib.TOMLDecodeError as error:
        raise ProgramInvalid([("$", f"not valid TOML: {error}")]) from error
    problems: Problems = []
    decoded = _shape(data, Program, "$", problems)
    if decoded is _WRONG:  # a required part is missing or wrong: nothing to check values on
        raise ProgramInvalid(problems)
    program = msgspec.convert(decoded, Program)
    tiers_decoded = not any(field.startswith("$.tiers") for field, _ in problems)
    problems += program_problems(program, check_tier_names=tiers_decoded)
    if problems:
        raise ProgramInvalid(problems)
    return program


def _shape(value: Any, annotation: Any, path: str, problems: Problems) -> Any:
    """`value` with every part that does not fit `annotation` reported in `problems` and left
    out (or `_WRONG` when `value` itself cannot stand: a wrong leaf, or a part it needs)."""
    struct = _struct_type(value, annotation)
    if struct is not None and isinstance(value, dict):
        return _shape_struct(value, struct, path, problems)
    origin = get_origin(annotation)
    if origin is list and isinstance(value, list):
        (item,) = get_args(annotation)
        items = [_shape(v, item, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return _WRONG if any(v is _WRONG for v in items) else items
    if origin is dict and isinstance(value, dict):
        _, item = get_args(annotation)
        entries = {k: _shape(v, item, f"{path}.{k}", problems) for k, v in value.items()}
        return _WRONG if any(v is _WRONG for v in entries.values()) else entries
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError as error:
        message, _, at = str(error).partition(" - at ")
        problems.append((path + at.strip("`").removeprefix("$"), message))
        return _WRONG
    return value


def _shape_struct(
    value: dict[str, Any], struct: type[msgspec.Struct], path: str, problems: Problems
) -> Any:
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    tag_field = struct.__struct_config__.tag_field
    shaped: dict[str, Any] = {}
    complete = True
    for key, item in value.items():
        if key == tag_field:
            shaped[key] = item
        elif key not in fields:
            problems.append((path, f"Object contains unknown field `{key}`"))
        elif (checked := _shape(item, fields[key].type, f"{path}.{key}", problems)) is _WRONG:
            complete = complete and not fields[key].required
        else:
            shaped[key] = checked
    for name, field in fields.items():
        if field.required and name not in value:
            problems.append((path, f"Object missing required field `{name}`"))
            complete = False
    return shaped if complete else _WRONG


def _struct_type(value: Any, annotation: Any) -> type[msgspec.Struct] | None:
    """The document part `value` is meant to be: the annotation's struct, or for a union of
    reward types the one its tag names (None when it names none: decoding says so)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    structs = [
        a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, msgspec.Struct)
    ]
    if len(structs) == 1:
        return structs[0]
    for struct in structs:
        config = struct.__struct_config__
        if isinstance(value, dict) and value.get(config.tag_field or "") == config.tag:
            return struct
    return None


def program_problems(program: Program, *, check_tier_names: bool = True) -> Problems:
    """What the types cannot say: signs, ranges, order, uniqueness and references. Without
    `check_tier_names` (the tiers did not decode, so their names are unknown), references to
    tiers are not checked."""
    problems: Problems = []

    def need(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append((field, message))

    def not_negative(value: int | Decimal | None, field: str) -> None:
        if isinstance(value, Decimal) and not value.is_finite():
            need(False, field, f"must be a finite number, got {value}")
            return
        need(value is None or value >= 0, field, f"must not be negative, got {value}")

    def positive(value: int | None, field: str) -> None:
        need(value is None or value > 0, field, f"must be positive, got {value}")

    def unique(values: Iterable[str], field: str) -> None:
        seen: set[str] = set()
        for value in values:
            need(value not in seen, field, f"{value!r} appears twice")
            seen.add(value)

    tier_names = {t.name for t in program.tiers.levels}

    def known_tiers(names: list[str], field: str) -> None:
        for name in names:
            need(not check_tier_names or name in tier_names, field, f"unknown tier {name!r}")

    need(
        len(program.currency) == 3 and program.currency.isalpha() and program.currency.isupper(),
        "$.currency",
        f"must be an ISO 4217 code such as EUR, got {program.currency!r}",
    )
    need(
        program.minor_units_per_major in (1, 10, 100, 1000),
        "$.minor_units_per_major",
        "must be 1, 10, 100 or 1000",
    )
    not_negative(program.point_value_minor, "$.point_value_minor")
    not_negative(program.return_window_days, "$.return_window_days")

    earning = program.earning
    not_negative(earning.points_per_major_unit, "$.earning.points_per_major_unit")
    for key, value in earning.category_multipliers.items():
        not_negative(value, f"$.earning.category_multipliers.{key}")
    for key, value in earning.sku_multipliers.items():
        not_negative(value, f"$.earning.sku_multipliers.{key}")
    not_negative(earning.cross_sell_bonus_points, "$.earning.cross_sell_bonus_points")

    unique((p.id for p in program.promotions), "$.promotions")
    for i, promo in enumerate(program.promotions):
        at = f"$.promotions[{i}]"
        need(promo.starts_at.tzinfo is not None, f"{at}.starts_at", "needs a time zone")
        need(promo.ends_at.tzinfo is not None, f"{at}.ends_at", "needs a time zone")
        if promo.starts_at.tzinfo is not None and promo.ends_at.tzinfo is not None:
            need(promo.ends_at > promo.starts_at, f"{at}.ends_at", "must be after starts_at")
        not_negative(promo.multiplier, f"{at}.multiplier")
        not_negative(promo.bonus_points, f"{at}.bonus_points")
        not_negative(promo.min_spend_minor, f"{at}.min_spend_minor")
        positive(promo.max_points_per_member, f"{at}.max_points_per_member")
        known_tiers(promo.tiers, f"{at}.tiers")

    unique((a.event for a in program.actions), "$.actions")
    for i, action in enumerate(program.actions):
        at = f"$.actions[{i}]"
        positive(action.points, f"{at}.points")
        for cap in ("per_day", "per_month", "lifetime"):
            positive(getattr(action, cap), f"{at}.{cap}")

    if program.referrals is not None:
        ref = program.referrals
        not_negative(ref.referee_points, "$.referrals.referee_points")
        not_negative(ref.referrer_points, "$.referrals.referrer_points")
        not_negative(ref.min_first_order_minor, "$.referrals.min_first_order_minor")
        positive(ref.max_rewarded_per_month, "$.referrals.max_rewarded_per_month")
        steps = [s.referrals for s in ref.ladder]
        need(steps == sorted(set(steps)), "$.referrals.ladder", "steps must strictly increase")
        for i, step in enumerate(ref.ladder):
            positive(step.referrals, f"$.referrals.ladder[{i}].referrals")
            not_negative(step.bonus_points, f"$.referrals.ladder[{i}].bonus_points")
        if ref.link_pattern is not None:
            need(
                ref.link_pattern.startswith("https://") and ref.link_pattern.count("{code}") == 1,
                "$.referrals.link_pattern",
                "must be an https:// URL with {code} once, where the member's code goes",
            )

    levels = program.tiers.levels
    unique((t.name for t in levels), "$.tiers.levels")
    not_negative(program.tiers.grace_days, "$.tiers.grace_days")
    for i, tier in enumerate(levels):
        at = f"$.tiers.levels[{i}]"
        not_negative(tier.threshold, f"{at}.threshold")
        not_negative(tier.multiplier, f"{at}.multiplier")
        if i:
            need(
                tier.threshold > levels[i - 1].threshold,
                f"{at}.threshold",
                f"tiers overlap: {tier.name!r} must need more than {levels[i - 1].name!r}",
            )

    unique((r.id for r in program.rewards), "$.rewards")
    for i, reward in enumerate(program.rewards):
        at = f"$.rewards[{i}]"
        positive(reward.cost_points, f"{at}.cost_points")
        not_negative(reward.stock, f"{at}.stock")
        positive(reward.per_member_limit, f"{at}.per_member_limit")
        known_tiers(reward.tiers, f"{at}.tiers")
        if isinstance(reward, PercentOff):
            need(0 < reward.percent <= 100, f"{at}.percent", "must be 1..100")
            positive(reward.max_discount_minor, f"{at}.max_discount_minor")
        if isinstance(reward, PointsPlusCash):
            positive(reward.amount_minor, f"{at}.amount_minor")
            not_negative(reward.min_points, f"{at}.min_points")
            need(0 < reward.max_share_percent <= 100, f"{at}.max_share_percent", "must be 1..100")

    unique((c.id for c in program.challenges), "$.challenges")
    for i, challenge in enumerate(program.challenges):
        at = f"$.challenges[{i}]"
        positive(challenge.target, f"{at}.target")
        positive(challenge.window_days, f"{at}.window_days")
        not_negative(challenge.bonus_points, f"{at}.bonus_points")

    chance = program.chance
    for i, draw in enumerate(chance.lotteries):
        need(
            draw.entries_close_at.tzinfo is not None,
            f"$.chance.lotteries[{i}].entries_close_at",
            "needs a time zone",
        )
        positive(draw.entry_cost_points, f"$.chance.lotteries[{i}].entry_cost_points")
        need(
            all(p > 0 for p in draw.prizes_points) and bool(draw.prizes_points),
            f"$.chance.lotteries[{i}].prizes_points",
            "needs one or more positive prizes",
        )
    for i, cards in enumerate(chance.scratch_cards):
        positive(cards.budget_points, f"$.chance.scratch_cards[{i}].budget_points")
        need(bool(cards.prizes), f"$.chance.scratch_cards[{i}].prizes", "needs prizes")
        for j, prize in enumerate(cards.prizes):
            not_negative(prize.points, f"$.chance.scratch_cards[{i}].prizes[{j}].points")
            positive(prize.weight, f"$.chance.scratch_cards[{i}].prizes[{j}].weight")
    for i, surprise in enumerate(chance.surprises):
        positive(surprise.points, f"$.chance.surprises[{i}].points")
        positive(surprise.members, f"$.chance.surprises[{i}].members")
        positive(surprise.budget_points, f"$.chance.surprises[{i}].budget_points")

    positive(program.expiry.months, "$.expiry.months")
    for j, days in enumerate(program.expiry.reminder_days):
        positive(days, f"$.expiry.reminder_days[{j}]")

    guard = program.guard
    for name in (
        "max_orders_per_hour",
        "max_orders_per_day",
        "min_orders_for_refund_rule",
        "max_referrals_per_day",
        "max_members_per_card",
        "max_members_per_device",
        "new_account_days",
        "max_new_account_orders_per_day",
        "max_reviews_per_day",
    ):
        positive(getattr(guard, name), f"$.guard.{name}")
    need(
        0 <= guard.max_refunded_percent <= 100,
        "$.guard.max_refunded_percent",
        "must be a percentage, 0 to 100",
    )
    need(
        0 < guard.model_alert_percent <= 100,
        "$.guard.model_alert_percent",
        "must be a percentage above 0, at most 100",
    )
    not_negative(guard.model_warmup, "$.guard.model_warmup")
    return problems
