"""The program in words a customer can read: how points are earned, when they are released and
expire, the tiers, the rewards, referrals, challenges and the leaderboard. Pure: a program and
the moment it is read at give a list of sections, each a title and its lines, that a frontend
shows as they are (the GraphQL `program` query maps them and adds nothing).

Only what is in force at that moment is told: a promotion appears while it runs, and a section
the program does not have (no tiers, no referrals) is left out, never shown empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pointguard.program.document.schema import (
    Action,
    Challenge,
    PointsPlusCash,
    Program,
    Promotion,
    Reward,
    Tier,
)
from pointguard.program.rewards.catalogue import gives, money
from pointguard.program.wording import ordinal

GOALS = {
    "orders": "{target} orders",
    "spend_minor": "spend {target}",
    "referrals": "{target} successful referrals",
    "reviews": "{target} reviews",
    "streak_weeks": "an order every week for {target} weeks running",
    "streak_months": "an order every month for {target} months running",
}
TIER_WINDOWS = {"rolling_12_months": "in the last 12 months", "calendar_year": "this calendar year"}


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]


def program_in_words(program: Program, now: datetime) -> list[Section]:
    """The program in force, told as it stands at `now`, section by section."""
    sections = [
        Section("Earning points", tuple(_earning(program, now))),
        Section("When your points are yours", tuple(_release_and_expiry(program))),
    ]
    if program.tiers.levels:
        sections.append(Section("Tiers", tuple(_tiers(program))))
    if program.rewards:
        sections.append(
            Section("Rewards", tuple(_reward(program, reward) for reward in program.rewards))
        )
    if program.referrals is not None:
        sections.append(Section("Referring friends", tuple(_referrals(program))))
    if program.challenges:
        sections.append(
            Section("Challenges", tuple(_challenge(program, c) for c in program.challenges))
        )
    if program.leaderboard.enabled:
        sections.append(
            Section(
                "Leaderboard",
                (
                    "Join the monthly leaderboard if you like: you appear under a random alias,"
                    " never your name, and can leave it at any time.",
                ),
            )
        )
    return sections


def _earning(program: Program, now: datetime) -> list[str]:
    earning = program.earning
    lines = [
        f"{_number(earning.points_per_major_unit)} points for every 1 {program.currency} you spend."
    ]
    for category, multiplier in sorted(earning.category_multipliers.items()):
        lines.append(f"{_times(multiplier)} the points on {category}.")
    for sku, multiplier in sorted(earning.sku_multipliers.items()):
        lines.append(f"{_times(multiplier)} the points on product {sku}.")
    charges = [
        name
        for name, counts in (("shipping", earning.include_shipping), ("tax", earning.include_tax))
        if counts
    ]
    if charges:
        verb = "earns" if len(charges) == 1 else "earn"
        lines.append(f"{' and '.join(charges).capitalize()} {verb} points too.")
    if earning.excluded_categories or earning.excluded_skus:
        excluded = [*sorted(earning.excluded_categories), *sorted(earning.excluded_skus)]
        lines.append(f"No points on {', '.join(excluded)}.")
    if earning.cross_sell_bonus_points:
        lines.append(f"{earning.cross_sell_bonus_points} points: {earning.cross_sell_description}.")
    lines += [_action(action) for action in program.actions]
    lines += [
        _promotion(program, promotion)
        for promotion in program.promotions
        if promotion.starts_at <= now < promotion.ends_at
    ]
    return lines


def _action(action: Action) -> str:
    caps = [
        f"{limit} {per}"
        for limit, per in (
            (action.per_day, "a day"),
            (action.per_month, "a month"),
            (action.lifetime, "in all"),
        )
        if limit is not None
    ]
    limit = f" (at most {', '.join(caps)})" if caps else ""
    return f"{action.points} points: {action.description}{limit}."


def _promotion(program: Program, promotion: Promotion) -> str:
    gains = []
    if promotion.multiplier != 1:
        on = f" on {', '.join(promotion.categories)}" if promotion.categories else ""
        gains.append(f"{_times(promotion.multiplier)} the points{on}")
    if promotion.bonus_points:
        gains.append(f"{promotion.bonus_points} bonus points an order")
    terms = []
    if promotion.min_spend_minor:
        terms.append(f"on orders of {_money(program, promotion.min_spend_minor)} or more")
    if promotion.tiers:
        terms.append(f"for {' and '.join(promotion.tiers)} members")
    if promotion.max_points_per_member is not None:
        terms.append(f"up to {promotion.max_points_per_member} extra points each")
    condition = f" ({', '.join(terms)})" if terms else ""
    what = " and ".join(gains) or "a promotion"
    until = promotion.ends_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Now, {promotion.name}: {what}{condition}, until {until}."


def _release_and_expiry(program: Program) -> list[str]:
    days = program.return_window_days
    lines = [
        f"Points for an order are pending for {days} days, the return window, then yours to"
        " spend; points for what you return are taken back."
    ]
    expiry = program.expiry
    if expiry.mode == "never":
        lines.append("Your points never expire.")
        return lines
    if expiry.mode == "lot":
        lines.append(f"Points expire {expiry.months} months after they become yours to spend.")
    else:
        lines.append(
            f"Your points expire after {expiry.months} months without an order or other activity."
        )
    if expiry.reminder_days:
        before = " and ".join(str(d) for d in sorted(expiry.reminder_days, reverse=True))
        lines.append(f"We remind you {before} days before points expire.")
    return lines


def _tiers(program: Program) -> list[str]:
    tiers = program.tiers
    window = TIER_WINDOWS[tiers.window]
    lines = []
    for tier in tiers.levels:
        if tiers.basis == "spend":
            reach = f"{_money(program, tier.threshold)} spent {window}"
        else:
            reach = f"{tier.threshold} points earned {window}"
        if tier.threshold == 0:
            reach = "from the start"
        perks = _perks(tier)
        lines.append(f"{tier.name}: {reach}" + (f"; {perks}." if perks else "."))
    review = "a year later" if tiers.window == "rolling_12_months" else "at the new year"
    lines.append(
        f"A tier is yours as soon as you qualify and is reviewed {review}; if you no longer"
        f" qualify then, you keep it {tiers.grace_days} more days."
    )
    return lines


def _perks(tier: Tier) -> str:
    perks = [f"{_times(tier.multiplier)} the points"] if tier.multiplier != 1 else []
    perks += ["free shipping"] if tier.free_shipping else []
    return ", ".join(perks + list(tier.perks))


def _reward(program: Program, reward: Reward) -> str:
    terms = []
    if reward.tiers:
        terms.append(f"{' and '.join(reward.tiers)} members only")
    if reward.per_member_limit is not None:
        terms.append(f"{reward.per_member_limit} per member")
    if reward.stock is not None:
        terms.append("while stock lasts")
    condition = f" ({', '.join(terms)})" if terms else ""
    if isinstance(reward, PointsPlusCash):  # its price is a rate, told by `gives`
        return f"{reward.name}: {gives(program, reward)}{condition}."
    return f"{reward.name}: {reward.cost_points} points for {gives(program, reward)}{condition}."


def _referrals(program: Program) -> list[str]:
    rules = program.referrals
    assert rules is not None
    lines = []
    if rules.referee_points:
        when = (
            "when they sign up" if rules.referee_reward_on == "signup" else "on their first order"
        )
        lines.append(
            f"A friend who joins with your link gets {rules.referee_points} points {when}."
        )
    minimum = (
        f" of {_money(program, rules.min_first_order_minor)} or more"
        if rules.min_first_order_minor
        else ""
    )
    lines.append(
        f"You get {rules.referrer_points} points when their first order{minimum} is paid, once"
        " its return window has passed."
    )
    if rules.max_rewarded_per_month is not None:
        lines.append(f"At most {rules.max_rewarded_per_month} referrals are rewarded a month.")
    lines += [
        f"{step.bonus_points} bonus points for your {ordinal(step.referrals)} successful referral."
        for step in rules.ladder
        if step.bonus_points
    ]
    return lines


def _challenge(program: Program, challenge: Challenge) -> str:
    target = (
        _money(program, challenge.target)
        if challenge.goal == "spend_minor"
        else str(challenge.target)
    )
    goal = GOALS[challenge.goal].format(target=target)
    window = "" if challenge.goal.startswith("streak") else f" within {challenge.window_days} days"
    bonus = f"{challenge.bonus_points} bonus points and " if challenge.bonus_points else ""
    return f"{challenge.name}: {goal}{window} for {bonus}the {challenge.badge} badge."


def _money(program: Program, amount_minor: int) -> str:
    return money(amount_minor, program.currency, program.minor_units_per_major)


def _number(value: Decimal) -> str:
    """`Decimal("2.50")` → "2.5", `Decimal("2")` → "2"."""
    return format(value.normalize(), "f")


def _times(multiplier: Decimal) -> str:
    return f"{_number(multiplier)} times"
