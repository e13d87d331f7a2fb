"""The program document: everything a merchant's loyalty program does, as data.

Decoding (`msgspec`) refuses wrong types, unknown fields and unknown reward types, naming the
field (`$.rewards[2].type`); `validation.py` then checks what types cannot say (rates not
negative, tiers not overlapping, promotions ending after they start). Amounts of money are
integers in the currency's minor units (`_minor`); rates and multipliers are decimals, never
floats, so that `1.1` means exactly 1.1.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from msgspec import Struct, field

from pointguard.fraud.policy import GuardPolicy

Rounding = Literal["floor", "half_up", "half_even"]


class Doc(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every part of the document: unknown fields are refused, not ignored.
    (msgspec does not inherit `kw_only` or `frozen`, so each part says them again.)"""


class Earning(Doc, kw_only=True, frozen=True):
    points_per_major_unit: Decimal
    category_multipliers: dict[str, Decimal] = {}
    sku_multipliers: dict[str, Decimal] = {}
    excluded_categories: list[str] = field(default_factory=lambda: ["gift_card"])
    excluded_skus: list[str] = []
    include_shipping: bool = False
    include_tax: bool = False
    cross_sell_bonus_points: int = 0
    cross_sell_description: str = "Bonus for your first purchase in a new category"


class Promotion(Doc, kw_only=True, frozen=True):
    id: str
    name: str  # the customer reads it: "Black Friday"
    starts_at: datetime
    ends_at: datetime  # exclusive
    multiplier: Decimal = Decimal(1)
    bonus_points: int = 0
    min_spend_minor: int = 0
    categories: list[str] = []  # empty: every eligible line
    tiers: list[str] = []  # empty: every member
    max_points_per_member: int | None = None


class Action(Doc, kw_only=True, frozen=True):
    event: str  # signup, birthday, review.published, social.shared, profile.completed, or custom
    points: int
    description: str
    per_day: int | None = None
    per_month: int | None = None
    lifetime: int | None = None


class ReferralLadderStep(Doc, kw_only=True, frozen=True):
    referrals: int  # the Nth successful referral
    bonus_points: int


class Referrals(Doc, kw_only=True, frozen=True):
    referee_points: int
    referee_reward_on: Literal["signup", "first_order"] = "first_order"
    referrer_points: int
    min_first_order_minor: int = 0
    max_rewarded_per_month: int | None = None
    ladder: list[ReferralLadderStep] = []
    # The storefront's referral URL with `{code}` where the member's code goes, e.g.
    # "https://shop.example/invite/{code}"; without it, customers get the code alone.
    link_pattern: str | None = None


class Tier(Doc, kw_only=True, frozen=True):
    name: str
    threshold: int  # qualifying spend in minor units, or points, per `Tiers.basis`
    multiplier: Decimal = Decimal(1)
    free_shipping: bool = False
    perks: list[str] = []


class Tiers(Doc, kw_only=True, frozen=True):
    basis: Literal["spend", "points"] = "spend"
    window: Literal["rolling_12_months", "calendar_year"] = "rolling_12_months"
    grace_days: int = 30
    levels: list[Tier] = []


class RewardBase(Doc, kw_only=True, frozen=True):
    id: str
    name: str
    cost_points: int
    stock: int | None = None
    per_member_limit: int | None = None
    tiers: list[str] = []  # empty: every member
    categories: list[str] = []  # product categories it suits, for suggestions


class FixedDiscount(RewardBase, kw_only=True, frozen=True, tag="fixed_discount", tag_field="type"):
    amount_minor: int


class PercentOff(RewardBase, kw_only=True, frozen=True, tag="percent_off", tag_field="type"):
    percent: int
    max_discount_minor: int


class FreeShipping(RewardBase, kw_only=True, frozen=True, tag="free_shipping", tag_field="type"):
    pass


class FreeProduct(RewardBase, kw_only=True, frozen=True, tag="free_product", tag_field="type"):
    sku: str


class PointsPlusCash(
    RewardBase, kw_only=True, frozen=True, tag="points_plus_cash", tag_field="type"
):
    """Pay part of a cart with points: `cost_points` buys `amount_minor`, repeatable."""

    amount_minor: int
    min_points: int
    max_share_percent: int  # at most this share of the cart paid with points


Reward = FixedDiscount | PercentOff | FreeShipping | FreeProduct | PointsPlusCash


class Challenge(Doc, kw_only=True, frozen=True):
    id: str
    name: str
    goal: Literal["orders", "spend_minor", "referrals", "reviews", "streak_weeks", "streak_months"]
    target: int
    window_days: int
    bonus_points: int
    badge: str


class Leaderboard(Doc, kw_only=True, frozen=True):
    enabled: bool = False


class LotteryDraw(Doc, kw_only=True, frozen=True):
    id: str
    name: str
    entry_cost_points: int
    entries_close_at: datetime
    prizes_points: list[int]  # one winner per prize, first prize first


class ScratchCardPrize(Doc, kw_only=True, frozen=True):
    points: int
    weight: int


class ScratchCards(Doc, kw_only=True, frozen=True):
    id: str
    name: str
    granted_on: str  # the event that grants a card, e.g. order.paid
    budget_points: int
    prizes: list[ScratchCardPrize]


class SurpriseBonus(Doc, kw_only=True, frozen=True):
    id: str
    name: str
    points: int
    members: int
    budget_points: int


class Chance(Doc, kw_only=True, frozen=True):
    lotteries: list[LotteryDraw] = []
    scratch_cards: list[ScratchCards] = []
    surprises: list[SurpriseBonus] = []


class Expiry(Doc, kw_only=True, frozen=True):
    mode: Literal["lot", "inactivity", "never"] = "lot"
    months: int = 12
    reminder_days: list[int] = field(default_factory=lambda: [30, 7])


class Program(Doc, kw_only=True, frozen=True):
    name: str
    currency: str  # ISO 4217, e.g. EUR
    minor_units_per_major: int = 100
    point_value_minor: Decimal = Decimal(1)  # what one point is worth, for liability in money
    rounding: Rounding = "floor"
    return_window_days: int = 30
    earning: Earning
    promotions: list[Promotion] = []
    actions: list[Action] = []
    referrals: Referrals | None = None
    tiers: Tiers = field(default_factory=Tiers)
    rewards: list[Reward] = []
    challenges: list[Challenge] = []
    leaderboard: Leaderboard = field(default_factory=Leaderboard)
    chance: Chance = field(default_factory=Chance)
    expiry: Expiry = field(default_factory=Expiry)
    guard: GuardPolicy = field(default_factory=GuardPolicy)
