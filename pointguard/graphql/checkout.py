"""The storefront's checkout: price the rewards on a cart, reserve one (its points set aside,
a code or discount to apply), then capture it when the order is paid or void it when the
checkout is abandoned. Storefront API key only; the member is named by the storefront's
customer id, and an id this merchant does not have is `NotFound`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from pointguard.db import PgConnection
from pointguard.errors import NotFound, QueryRefused
from pointguard.graphql.context import RequestContext
from pointguard.graphql.problems import (
    InsufficientPoints,
    MemberUnderReview,
    Problem,
    RedemptionCompleted,
    ReservationLapsed,
    RewardUnavailable,
    TierRequired,
    or_problem,
)
from pointguard.graphql.problems import NotFound as NotFoundProblem
from pointguard.program.members import member_exists
from pointguard.program.rewards import redemption
from pointguard.program.rewards.catalogue import Cart, QuoteOption

Context = Info[RequestContext, None]
MAX_KEY_CHARS = 200
MAX_SKUS = 500


@strawberry.input(description="The cart at checkout, in the program's currency's minor units.")
class CartInput:
    subtotal_minor: int = strawberry.field(
        description="Items after the storefront's own discounts, before shipping and tax."
    )
    shipping_minor: int = 0
    skus: list[str] = strawberry.field(default_factory=list)

    def to_cart(self) -> Cart:
        if len(self.skus) > MAX_SKUS:
            raise QueryRefused(f"a cart lists at most {MAX_SKUS} skus")
        return Cart(
            subtotal_minor=self.subtotal_minor,
            shipping_minor=self.shipping_minor,
            skus=tuple(self.skus),
        )


@strawberry.type
class Refusal:
    code: str
    message: str


@strawberry.type(description="One reward priced on the cart for this member.")
class RewardQuote:
    reward_id: strawberry.ID
    name: str
    type: str
    points: int
    discount_minor: int
    free_shipping: bool
    free_sku: str | None
    redeemable: bool
    refusals: list[Refusal]


@strawberry.type(description="Points reserved for a checkout, and what to apply to the order.")
class Redemption:
    id: strawberry.ID
    member_id: strawberry.ID
    reward_id: strawberry.ID
    code: str
    points: int
    discount_minor: int
    free_shipping: bool
    free_sku: str | None
    description: str
    expires_at: datetime
    status: str = strawberry.field(description="open, captured (paid) or voided.")


ReserveResult = Annotated[
    Redemption
    | InsufficientPoints
    | RewardUnavailable
    | TierRequired
    | MemberUnderReview
    | NotFoundProblem,
    strawberry.union("ReserveRedemptionResult"),
]
CaptureResult = Annotated[
    Redemption | ReservationLapsed | NotFoundProblem,
    strawberry.union("CaptureRedemptionResult"),
]
VoidResult = Annotated[
    Redemption | RedemptionCompleted | NotFoundProblem,
    strawberry.union("VoidRedemptionResult"),
]


async def quote_redemption(
    info: Context, member_id: strawberry.ID, cart: CartInput
) -> list[RewardQuote]:
    """Every reward of the program priced on `cart` for the member, with why not where not."""
    merchant_id = info.context.storefront()
    wanted = cart.to_cart()

    async def quote(pg: PgConnection) -> list[QuoteOption]:
        await _require_member(pg, merchant_id, str(member_id))
        return await redemption.checkout_quote(
            pg, merchant_id, str(member_id), wanted, info.context.now
        )

    return [_quote(option) for option in await info.context.read(quote)]


async def reserve_redemption(
    info: Context,
    member_id: strawberry.ID,
    reward_id: strawberry.ID,
    cart: CartInput,
    idempotency_key: str,
    points: int | None = None,
) -> ReserveResult:
    """Reserve the reward's points for this checkout. The same `idempotencyKey` again answers
    the first reservation and reserves nothing more."""
    merchant_id = info.context.storefront()
    check_key(idempotency_key)
    wanted = cart.to_cart()

    async def reserve(pg: PgConnection) -> redemption.Redemption:
        await _require_member(pg, merchant_id, str(member_id))
        return await redemption.redeem(
            pg,
            merchant_id,
            str(member_id),
            str(reward_id),
            wanted,
            key=idempotency_key,
            now=info.context.now,
            points=points,
        )

    return await screened(  # type: ignore[return-value]
        info, str(member_id), str(reward_id), idempotency_key, reserve
    )


async def capture_redemption(info: Context, redemption_id: strawberry.ID) -> CaptureResult:
    """The order was paid: spend the reserved points. Doing it again changes nothing."""
    merchant_id = info.context.storefront()
    return await settled(  # type: ignore[return-value]
        info,
        lambda pg: redemption.complete_redemption(pg, merchant_id, _redemption_id(redemption_id)),
    )


async def void_redemption(info: Context, redemption_id: strawberry.ID) -> VoidResult:
    """The checkout was abandoned: the points go back. Doing it again changes nothing."""
    merchant_id = info.context.storefront()
    return await settled(  # type: ignore[return-value]
        info,
        lambda pg: redemption.cancel_redemption(pg, merchant_id, _redemption_id(redemption_id)),
    )


async def screened(
    info: Context,
    member_id: str,
    reward_id: str,
    key: str,
    reserve: Callable[[PgConnection], Awaitable[redemption.Redemption]],
) -> Redemption | Problem:
    """`reserve`, after the fraud guard's look at the checkout, committed on its own: a member
    linked to a flagged one has their case opened and the reservation refused
    (`MemberUnderReview`); also for the customer's `redeemReward`."""
    merchant_id, now = info.context.caller.merchant_id, info.context.now
    await info.context.write(
        lambda pg: redemption.screen_redemption(
            pg, merchant_id, member_id, reward_id, key=key, now=now
        )
    )
    return await settled(info, reserve)


async def settled(
    info: Context, work: Callable[[PgConnection], Awaitable[redemption.Redemption]]
) -> Redemption | Problem:
    """The redemption `work` made or read, or the problem that stopped it (nothing changed);
    also for the customer's `redeemReward`."""
    made = await or_problem(lambda: info.context.write(work))
    return made if isinstance(made, Problem) else _redemption(made)


async def _require_member(pg: PgConnection, merchant_id: str, member_id: str) -> None:
    if not await member_exists(pg, merchant_id, member_id):
        raise NotFound(f"no member {member_id!r}")


def check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise QueryRefused(f"an idempotency key has 1 to {MAX_KEY_CHARS} characters")


def _redemption_id(value: strawberry.ID) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"no redemption {text!r}")
    return int(text)


def _quote(option: QuoteOption) -> RewardQuote:
    return RewardQuote(
        reward_id=strawberry.ID(option.reward_id),
        name=option.name,
        type=option.type,
        points=option.points,
        discount_minor=option.discount_minor,
        free_shipping=option.free_shipping,
        free_sku=option.free_sku,
        redeemable=option.redeemable,
        refusals=[Refusal(code=r.reason.value, message=r.message) for r in option.refusals],
    )


def _redemption(made: redemption.Redemption) -> Redemption:
    return Redemption(
        id=strawberry.ID(str(made.redemption_id)),
        member_id=strawberry.ID(made.member_id),
        reward_id=strawberry.ID(made.reward_id),
        code=made.code,
        points=made.points,
        discount_minor=made.discount_minor,
        free_shipping=made.free_shipping,
        free_sku=made.free_sku,
        description=made.description,
        expires_at=made.expires_at,
        status=made.status,
    )
