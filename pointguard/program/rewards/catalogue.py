"""The rewards catalogue at checkout: what a member can redeem on a cart, for how many points,
and what it takes off. Pure: the service (`redemption.py`) loads the member's state.

The rules, stated once (money in integer minor units, points in integers, no floats):
- A reward is refused, with every reason that applies, when: the member's tier is not one of
  the reward's `tiers` (an empty list admits every member); its `stock` is used up (stock left
  counts live redemptions: reserved or captured, never voided or timed out); the member has
  reached its `per_member_limit` of live redemptions; it takes nothing off this cart; or the
  member's available points do not cover it (always the last reason listed).
- Fixed discount: `cost_points` for min(`amount_minor`, subtotal).
- Percent off: `cost_points` for floor(subtotal x `percent` / 100), capped at
  `max_discount_minor`.
- Free shipping: `cost_points` for the cart's shipping; refused on a cart with no shipping.
- Free product: `cost_points` for the SKU (the storefront adds it); no money off the cart.
- Points plus cash: pay part of the subtotal with points, in units of `cost_points` that each
  take `amount_minor` off. A member spends at least `min_points` (rounded up to whole units, and
  at least one unit) and at most what pays `max_share_percent` of the subtotal
  (floor(subtotal x share / 100), whole units only) and what they hold. The quote offers the
  most the member can use; `price_points_plus_cash` prices a requested number of points and
  refuses one that is not a whole number of units, below the minimum or above the share.
- With no cart (the customer's account page): `catalogue` lists every reward with what it
  gives in words, the fewest points it takes and how many the member lacks; only a free
  product can be redeemed there, every other type takes money off a cart and needs a checkout
  (`needs_checkout`, refused as `NEEDS_CHECKOUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from msgspec import Struct

from pointguard.errors import InvalidAmount
from pointguard.ledger.entries import MAX_DESCRIPTION_CHARS
from pointguard.program.document.schema import (
    FixedDiscount,
    FreeProduct,
    FreeShipping,
    PercentOff,
    PointsPlusCash,
    Program,
    Reward,
)


class Reason(StrEnum):
    """Why a reward cannot be redeemed; the `reason` of `errors.RewardUnavailable`."""

    UNKNOWN_REWARD = "unknown_reward"
    KEY_REUSED = "idempotency_key_reused"  # the key already redeemed something else
    TIER_GATED = "tier_gated"
    OUT_OF_STOCK = "out_of_stock"
    LIMIT_REACHED = "per_member_limit_reached"
    NOTHING_TO_DISCOUNT = "nothing_to_discount"
    CART_TOO_SMALL = "cart_too_small"
    NOT_WHOLE_UNITS = "not_whole_units"
    BELOW_MIN_POINTS = "below_min_points"
    ABOVE_MAX_SHARE = "above_max_share"
    POINTS_NOT_ADJUSTABLE = "points_not_adjustable"
    NEEDS_CHECKOUT = "needs_checkout"  # takes money off a cart: redeemed at checkout only
    NOT_ENOUGH_POINTS = "not_enough_points"


class Cart(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The checkout's cart as the storefront states it, in the program's currency."""

    subtotal_minor: int  # items after the storefront's own discounts, before shipping and tax
    shipping_minor: int = 0
    skus: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Not ValueError: msgspec would turn that into a decode error without our type.
        for name in ("subtotal_minor", "shipping_minor"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidAmount(f"cart {name} must be a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class RewardContext:
    """The member's state the rules need: points available now, tier, and per reward the
    member's live redemptions and the stock left (a reward missing here has all its stock)."""

    available_points: int
    tier: str | None = None
    redeemed_by_reward: Mapping[str, int] = field(default_factory=dict)
    stock_left: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    message: str  # for the customer: "You need 20 more points"


@dataclass(frozen=True)
class QuoteOption:
    """One reward on one cart: what it costs, what it gives, and why not, if not."""

    reward_id: str
    name: str
    type: str  # the reward's type tag: fixed_discount, percent_off, ...
    points: int
    discount_minor: int
    free_shipping: bool = False
    free_sku: str | None = None
    refusals: tuple[Refusal, ...] = ()

    @property
    def redeemable(self) -> bool:
        return not self.refusals


def find_reward(program: Program, reward_id: str) -> Reward | None:
    return next((r for r in program.rewards if r.id == reward_id), None)


def quote(program: Program, cart: Cart, context: RewardContext) -> list[QuoteOption]:
    """Every reward of the catalogue, in catalogue order, priced on `cart` for this member."""
    return [quote_reward(program, reward, cart, context) for reward in program.rewards]


def quote_reward(
    program: Program,
    reward: Reward,
    cart: Cart,
    context: RewardContext,
    *,
    points: int | None = None,
) -> QuoteOption:
    """One reward on `cart`; `points` asks for that many points of a points-plus-cash reward
    instead of the best use."""
    refusals = _eligibility(reward, context)
    if isinstance(reward, PointsPlusCash):
        option = (
            _best_points_plus_cash(program, reward, cart, context.available_points)
            if points is None
            else price_points_plus_cash(program, reward, cart, points, context.available_points)
        )
        return _with(option, refusals)
    if points is not None:
        refusals.append(
            Refusal(
                Reason.POINTS_NOT_ADJUSTABLE, f"{reward.name} costs {reward.cost_points} points"
            )
        )
    option = _fixed_price_option(reward, cart)
    if context.available_points < reward.cost_points:
        refusals.append(_short_of(reward.cost_points, context.available_points))
    return _with(option, refusals)


def price_points_plus_cash(
    program: Program, reward: PointsPlusCash, cart: Cart, points: int, available_points: int
) -> QuoteOption:
    """`points` of a points-plus-cash reward on `cart`: the discount they buy, or why not."""
    unit = f"{reward.cost_points} points"
    limit = _share_cap_minor(reward, cart)
    refusals: list[Refusal] = []
    if points <= 0 or points % reward.cost_points:
        refusals.append(
            Refusal(Reason.NOT_WHOLE_UNITS, f"Points are spent in steps of {unit}, got {points}")
        )
    elif points < reward.min_points:
        refusals.append(
            Refusal(Reason.BELOW_MIN_POINTS, f"Spend at least {reward.min_points} points")
        )
    discount_minor = max(points, 0) // reward.cost_points * reward.amount_minor
    if discount_minor > limit:
        most = limit // reward.amount_minor * reward.cost_points
        refusals.append(
            Refusal(
                Reason.ABOVE_MAX_SHARE,
                f"At most {reward.max_share_percent}% of this cart"
                f" ({_money(program, limit)}, {most} points) can be paid with points",
            )
        )
    if points > available_points:
        refusals.append(_short_of(points, available_points))
    return QuoteOption(
        reward.id, reward.name, _type(reward), points, discount_minor, refusals=tuple(refusals)
    )


def describe(program: Program, reward: Reward, option: QuoteOption) -> str:
    """The redemption as the customer reads it in their history: "500 points for 5 EUR off"."""
    off = _money(program, option.discount_minor)
    if isinstance(reward, FixedDiscount | PointsPlusCash):
        what = f"{off} off"
    elif isinstance(reward, PercentOff):
        what = f"{reward.percent}% off ({off})"
    elif isinstance(reward, FreeShipping):
        what = "free shipping"
    else:
        assert isinstance(reward, FreeProduct)
        what = reward.name
    return f"{option.points} points for {what}"[:MAX_DESCRIPTION_CHARS]


def gives(program: Program, reward: Reward) -> str:
    """What the reward gives, in the customer's words: "5 EUR off your order"."""
    if isinstance(reward, FixedDiscount):
        return f"{_money(program, reward.amount_minor)} off your order"
    if isinstance(reward, PercentOff):
        most = _money(program, reward.max_discount_minor)
        return f"{reward.percent}% off your order, at most {most}"
    if isinstance(reward, FreeShipping):
        return "free shipping on your order"
    if isinstance(reward, FreeProduct):
        return "the product, added to your order for free"
    return (
        f"every {reward.cost_points} points pay {_money(program, reward.amount_minor)} of your"
        f" order, up to {reward.max_share_percent}% of it, from {least_points(reward)} points"
    )


def least_points(reward: Reward) -> int:
    """The fewest points the reward can be redeemed for: its cost, or for points plus cash
    the smallest whole number of units that reaches `min_points`."""
    if isinstance(reward, PointsPlusCash):
        return max(1, -(-reward.min_points // reward.cost_points)) * reward.cost_points
    return reward.cost_points


def needs_checkout(reward: Reward) -> bool:
    """Whether the reward takes money off a cart, so that only a checkout can redeem it: every
    type but a free product (a discount, shipping or a share of a cart needs the cart)."""
    return not isinstance(reward, FreeProduct)


@dataclass(frozen=True)
class CatalogueEntry:
    """One reward of the catalogue as a member sees it on their account page."""

    reward: Reward
    type: str  # the reward's type tag
    gives: str
    least_points: int
    points_short: int  # 0: affordable now
    tier_gated: bool  # for members of other tiers
    needs_checkout: bool  # `needs_checkout`: not redeemable from the account page
    refusals: tuple[Refusal, ...]  # why it cannot be redeemed now, points aside

    @property
    def affordable(self) -> bool:
        return self.points_short == 0


def catalogue(program: Program, context: RewardContext) -> list[CatalogueEntry]:
    """Every reward of the program, in catalogue order, for this member, with no cart."""
    entries = []
    for reward in program.rewards:
        least = least_points(reward)
        entries.append(
            CatalogueEntry(
                reward=reward,
                type=_type(reward),
                gives=gives(program, reward),
                least_points=least,
                points_short=max(0, least - context.available_points),
                tier_gated=not admits_tier(reward, context.tier),
                needs_checkout=needs_checkout(reward),
                refusals=tuple(_eligibility(reward, context)),
            )
        )
    return entries


def admits_tier(reward: Reward, tier: str | None) -> bool:
    """Whether a member of `tier` may redeem the reward: an empty `tiers` admits everyone."""
    return not reward.tiers or tier in reward.tiers


def _eligibility(reward: Reward, context: RewardContext) -> list[Refusal]:
    refusals = []
    if not admits_tier(reward, context.tier):
        refusals.append(
            Refusal(Reason.TIER_GATED, f"For {' and '.join(reward.tiers)} members only")
        )
    stock_left = context.stock_left.get(reward.id, reward.stock)
    if stock_left is not None and stock_left <= 0:
        refusals.append(Refusal(Reason.OUT_OF_STOCK, f"{reward.name} is out of stock"))
    used = context.redeemed_by_reward.get(reward.id, 0)
    if reward.per_member_limit is not None and used >= reward.per_member_limit:
        refusals.append(
            Refusal(
                Reason.LIMIT_REACHED,
                f"{reward.name} can be redeemed {reward.per_member_limit} time(s) per member",
            )
        )
    return refusals


def _fixed_price_option(
    reward: FixedDiscount | PercentOff | FreeShipping | FreeProduct, cart: Cart
) -> QuoteOption:
    free_shipping, free_sku, discount_minor = False, None, 0
    if isinstance(reward, FixedDiscount):
        discount_minor = min(reward.amount_minor, cart.subtotal_minor)
    elif isinstance(reward, PercentOff):
        discount_minor = min(cart.subtotal_minor * reward.percent // 100, reward.max_discount_minor)
    elif isinstance(reward, FreeShipping):
        free_shipping, discount_minor = True, cart.shipping_minor
    else:
        free_sku = reward.sku
    refusals: tuple[Refusal, ...] = ()
    if free_sku is None and discount_minor == 0:
        what = "no shipping" if free_shipping else "nothing"
        refusals = (Refusal(Reason.NOTHING_TO_DISCOUNT, f"This cart has {what} to take off"),)
    return QuoteOption(
        reward.id,
        reward.name,
        _type(reward),
        reward.cost_points,
        discount_minor,
        free_shipping=free_shipping,
        free_sku=free_sku,
        refusals=refusals,
    )


def _best_points_plus_cash(
    program: Program, reward: PointsPlusCash, cart: Cart, available_points: int
) -> QuoteOption:
    min_units = least_points(reward) // reward.cost_points
    limit = _share_cap_minor(reward, cart)
    by_share = limit // reward.amount_minor
    by_points = available_points // reward.cost_points
    units = min(by_share, by_points)
    refusals = []
    if by_share < min_units:
        refusals.append(
            Refusal(
                Reason.CART_TOO_SMALL,
                f"Points can pay {reward.max_share_percent}% of a cart, at least"
                f" {_money(program, min_units * reward.amount_minor)}: add to the cart",
            )
        )
    if by_points < min_units:
        refusals.append(_short_of(min_units * reward.cost_points, available_points))
    if refusals:
        units = min_units  # quote what the smallest use would cost and give
    return QuoteOption(
        reward.id,
        reward.name,
        _type(reward),
        units * reward.cost_points,
        units * reward.amount_minor,
        refusals=tuple(refusals),
    )


def _share_cap_minor(reward: PointsPlusCash, cart: Cart) -> int:
    return cart.subtotal_minor * reward.max_share_percent // 100


def _short_of(points: int, available_points: int) -> Refusal:
    return Refusal(
        Reason.NOT_ENOUGH_POINTS,
        f"You need {points} points and have {available_points}:"
        f" {points - available_points} more to go",
    )


def _with(option: QuoteOption, refusals: list[Refusal]) -> QuoteOption:
    """`option` with the eligibility refusals first and not-enough-points always last."""
    merged = refusals + list(option.refusals)
    merged.sort(key=lambda r: r.reason == Reason.NOT_ENOUGH_POINTS)
    return replace(option, refusals=tuple(merged))


def _type(reward: Reward) -> str:
    return str(type(reward).__struct_config__.tag)


def _money(program: Program, amount_minor: int) -> str:
    return money(amount_minor, program.currency, program.minor_units_per_major)


def money(amount_minor: int, currency: str, minor_units_per_major: int) -> str:
    """`550, "EUR", 100` → "5.50 EUR"; whole amounts without decimals: "5 EUR"."""
    major, minor = divmod(amount_minor, minor_units_per_major)
    if minor == 0:
        return f"{major} {currency}"
    digits = len(str(minor_units_per_major)) - 1
    return f"{major}.{minor:0{digits}d} {currency}"
