"""Redeeming rewards at checkout on the ledger's two-phase spend, in the caller's transaction.

`redeem` reserves the reward's points (available → reserved, with a timeout) and records a
redemption whose id is the ledger hold's and whose unguessable `code` the storefront applies;
`complete_redemption` captures the hold when the order is paid, `cancel_redemption` voids it.

Rules this module enforces:
- Stock can never be oversold: a redemption of a reward with limited stock first locks the
  reward's row in `program_reward_locks`, then counts, so redemptions of one reward run one at a
  time. Every redemption also locks the member's accounts before counting, so a member's
  per-member limit and balance cannot change under the check either.
- Stock and per-member limits count live redemptions only: those whose hold is open or
  captured. A voided or timed-out hold (the ledger upkeep voids those) gives its stock and the
  member's allowance back with no job of ours. Stock counts every redemption of the reward id
  ever made, across program versions.
- A repeated `key` returns the first redemption and reserves nothing more, even when the
  repeats race; a key that redeemed something else (another member or reward) is refused.
- A checkout paid late is still charged: completing a redemption whose hold timed out or was
  cancelled reserves and spends its points again (`ledger.operations.capture`), or raises
  `ReservationLapsed` if the member no longer has them.
- A customer redeeming from their account page (`redeem_from_account`) has no cart: only a
  reward that takes nothing off a cart (a free product) can be redeemed so; the others are
  refused (`Reason.NEEDS_CHECKOUT`). Its points stay reserved for `ACCOUNT_TIMEOUT_S`, for the
  customer to use the code at a checkout, which captures it.
- Anything refused raises before the ledger is touched: `RewardUnavailable` with a `Reason`,
  `InsufficientPoints` when the member's available points fall short.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.errors import (
    InsufficientPoints,
    NotFound,
    RedemptionCompleted,
    RewardUnavailable,
)
from pointguard.fraud.cases import open_cases, refuse_if_under_review
from pointguard.fraud.redemption_guard import record_refusal, redemption_risk
from pointguard.ledger import operations as ops
from pointguard.ledger.balances import member_balances
from pointguard.ledger.keys import idempotency_key
from pointguard.program.document.schema import Reward
from pointguard.program.document.versions import program_in_force
from pointguard.program.keyed_rows import from_row, row_by_key
from pointguard.program.members import member_tier
from pointguard.program.outbox import write_events
from pointguard.program.rewards.catalogue import (
    Cart,
    CatalogueEntry,
    QuoteOption,
    Reason,
    RewardContext,
    catalogue,
    describe,
    find_reward,
    needs_checkout,
    quote,
    quote_reward,
)

DEFAULT_TIMEOUT_S = 900
ACCOUNT_TIMEOUT_S = ops.MAX_HOLD_TIMEOUT_S  # 7 days to use a reward redeemed from an account
NO_CART = Cart(subtotal_minor=0)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols, none mistaken for another
CODE_GROUPS, CODE_GROUP_CHARS = 4, 4  # 16 symbols: 80 random bits

SELECT_REDEMPTION = """
SELECT r.redemption_id, r.member_id, r.reward_id, r.code, r.points, r.discount_minor,
       r.free_shipping, r.free_sku, r.description, h.expires_at, h.status
FROM program_redemptions r
JOIN ledger_holds h ON h.merchant_id = r.merchant_id AND h.hold_id = r.redemption_id
"""

SELECT_REDEMPTION_BY_KEY = SELECT_REDEMPTION + "WHERE r.merchant_id = $1 AND r.idempotency_key = $2"

SELECT_REDEMPTION_BY_ID = SELECT_REDEMPTION + "WHERE r.merchant_id = $1 AND r.redemption_id = $2"

INSERT_REDEMPTION = """
INSERT INTO program_redemptions (merchant_id, redemption_id, idempotency_key, member_id,
    reward_id, code, points, discount_minor, free_shipping, free_sku, description, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""


class NewRedemption(NamedTuple):
    """`INSERT_REDEMPTION`'s parameters, in `$n` order."""

    merchant_id: str
    redemption_id: int
    idempotency_key: str
    member_id: str
    reward_id: str
    code: str
    points: int
    discount_minor: int
    free_shipping: bool
    free_sku: str | None
    description: str
    created_at: datetime


LOCK_REWARD = """
INSERT INTO program_reward_locks AS l (merchant_id, reward_id) VALUES ($1, $2)
ON CONFLICT (merchant_id, reward_id) DO UPDATE SET reward_id = l.reward_id
"""

COUNT_LIVE_REDEMPTIONS_BY_MEMBER = """
SELECT r.reward_id, count(*) AS redemptions
FROM program_redemptions r
JOIN ledger_holds h ON h.merchant_id = r.merchant_id AND h.hold_id = r.redemption_id
WHERE r.merchant_id = $1 AND r.member_id = $2 AND r.reward_id = ANY($3::text[])
  AND h.status IN ('open', 'captured')
GROUP BY r.reward_id
"""

COUNT_LIVE_REDEMPTIONS_BY_REWARD = """
SELECT r.reward_id, count(*) AS redemptions
FROM program_redemptions r
JOIN ledger_holds h ON h.merchant_id = r.merchant_id AND h.hold_id = r.redemption_id
WHERE r.merchant_id = $1 AND r.reward_id = ANY($2::text[]) AND h.status IN ('open', 'captured')
GROUP BY r.reward_id
"""


@dataclass(frozen=True)
class Redemption:
    """What the storefront applies: `code`, or `discount_minor` / free shipping / `free_sku`,
    valid until `expires_at` unless completed; `status` is the hold's: open, captured, voided."""

    redemption_id: int
    member_id: str
    reward_id: str
    code: str
    points: int
    discount_minor: int
    free_shipping: bool
    free_sku: str | None
    description: str
    expires_at: datetime
    status: str


async def checkout_quote(
    pg: PgConnection, merchant_id: str, member_id: str, cart: Cart, now: datetime
) -> list[QuoteOption]:
    """Every reward of the program in force at `now`, priced on `cart` for this member."""
    program = (await program_in_force(pg, merchant_id, now)).program
    context = await _context(pg, merchant_id, member_id, program.rewards)
    return quote(program, cart, context)


async def member_catalogue(
    pg: PgConnection, merchant_id: str, member_id: str, now: datetime
) -> list[CatalogueEntry]:
    """Every reward of the program in force at `now`, for this member, without a cart."""
    program = (await program_in_force(pg, merchant_id, now)).program
    return catalogue(program, await _context(pg, merchant_id, member_id, program.rewards))


async def redeem_from_account(
    pg: PgConnection, merchant_id: str, member_id: str, reward_id: str, *, key: str, now: datetime
) -> Redemption:
    """The customer redeems a reward from their account page, with no cart: `redeem` for a
    reward that needs no cart, held for `ACCOUNT_TIMEOUT_S`; `RewardUnavailable`
    (`NEEDS_CHECKOUT`) for one that takes money off a cart."""
    program = (await program_in_force(pg, merchant_id, now)).program
    reward = find_reward(program, reward_id)
    if reward is not None and needs_checkout(reward):
        raise RewardUnavailable(
            f"{reward.name} takes money off an order: redeem it at checkout",
            reward_id=reward_id,
            reason=Reason.NEEDS_CHECKOUT,
        )
    return await redeem(
        pg,
        merchant_id,
        member_id,
        reward_id,
        NO_CART,
        key=key,
        now=now,
        timeout_s=ACCOUNT_TIMEOUT_S,
    )


async def redeem(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    reward_id: str,
    cart: Cart,
    *,
    key: str,
    now: datetime,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    points: int | None = None,
) -> Redemption:
    """Reserve the reward's points for this checkout and return the redemption to apply.
    `points` chooses how many points a points-plus-cash reward uses (default: the most).
    A member under review (an open fraud case, or frozen) is refused: `MemberUnderReview`."""
    earlier = await _by_key(pg, merchant_id, member_id, reward_id, key)
    if earlier is not None:
        return earlier
    program = (await program_in_force(pg, merchant_id, now)).program
    reward = find_reward(program, reward_id)
    if reward is None:
        raise RewardUnavailable(
            f"no reward {reward_id!r} in the program",
            reward_id=reward_id,
            reason=Reason.UNKNOWN_REWARD,
        )
    if reward.stock is not None:
        await pg.execute(LOCK_REWARD, merchant_id, reward.id)
    await ops.lock_members(pg, merchant_id, [member_id])
    # A racing repeat of this key may have committed while we waited for the locks.
    earlier = await _by_key(pg, merchant_id, member_id, reward_id, key)
    if earlier is not None:
        return earlier
    await refuse_if_under_review(pg, merchant_id, member_id)

    context = await _context(pg, merchant_id, member_id, [reward])
    option = quote_reward(program, reward, cart, context, points=points)
    _raise_refusal(option, member_id, context.available_points)
    description = describe(program, reward, option)
    hold = await ops.reserve(
        pg,
        merchant_id,
        member_id,
        option.points,
        key=idempotency_key("redemption", key),
        description=description,
        source=f"program.reward:{reward.id}",
        now=now,
        timeout_s=timeout_s,
    )
    if not hold.replayed:
        redemption = NewRedemption(
            merchant_id=merchant_id,
            redemption_id=hold.entry_id,
            idempotency_key=key,
            member_id=member_id,
            reward_id=reward.id,
            code=_new_code(),
            points=option.points,
            discount_minor=option.discount_minor,
            free_shipping=option.free_shipping,
            free_sku=option.free_sku,
            description=description,
            created_at=now,
        )
        await pg.execute(INSERT_REDEMPTION, *redemption)
    found = await _by_id(pg, merchant_id, hold.entry_id)
    if found is None:  # the ledger key was used outside redemptions
        raise _key_reused(reward_id, key)
    return found


async def screen_redemption(
    pg: PgConnection, merchant_id: str, member_id: str, reward_id: str, *, key: str, now: datetime
) -> bool:
    """The fraud guard's look at a checkout before it reserves (`fraud/redemption_guard.py`):
    True when it must wait for a reviewer, the member's case then opened or joined (and
    `member.flagged` queued for a new one) with the refusal and its reasons. Run it in a
    transaction of its own and commit, then `redeem`, which refuses the member under review;
    a checkout retried with the same key is recorded once."""
    policy = (await program_in_force(pg, merchant_id, now)).program.guard
    reasons = await redemption_risk(pg, merchant_id, member_id, policy)
    if not reasons:
        return False
    cases, events = await open_cases(pg, merchant_id, [(member_id, now)])
    await write_events(pg, merchant_id, events)
    await record_refusal(
        pg,
        merchant_id,
        member_id,
        key=key,
        reward_id=reward_id,
        reasons=reasons,
        case_id=cases[member_id],
        now=now,
    )
    return True


async def complete_redemption(pg: PgConnection, merchant_id: str, redemption_id: int) -> Redemption:
    """The order was paid: spend the reserved points (reserved → redeemed). Idempotent.

    The customer has had the discount, so a redemption whose hold was voided meanwhile
    (cancelled, or timed out past `ops.CAPTURE_GRACE_S`) is spent all the same from the
    member's available points; `ReservationLapsed` when they no longer cover it."""
    redemption = await _existing(pg, merchant_id, redemption_id)
    entry = await ops.capture(
        pg, merchant_id, redemption_id, description=f"Redeemed: {redemption.description}"
    )
    if not entry.replayed:
        payload = {
            "member_id": redemption.member_id,
            "redemption_id": redemption_id,
            "reward_id": redemption.reward_id,
            "points": redemption.points,
            "discount_minor": redemption.discount_minor,
            "free_shipping": redemption.free_shipping,
            "free_sku": redemption.free_sku,
            "description": redemption.description,
            "at": entry.created_at,
        }
        await write_events(pg, merchant_id, [("reward.redeemed", payload)])
    return await _existing(pg, merchant_id, redemption_id)


async def cancel_redemption(pg: PgConnection, merchant_id: str, redemption_id: int) -> Redemption:
    """The checkout was abandoned or the order cancelled before payment: the points go back
    (reserved → available), and so do the stock and the member's allowance. Idempotent."""
    redemption = await _existing(pg, merchant_id, redemption_id)
    if redemption.status == "captured":
        raise RedemptionCompleted(
            f"redemption {redemption_id} is completed (the order was paid): it cannot be cancelled"
        )
    await ops.void(
        pg, merchant_id, redemption_id, description=f"Returned: {redemption.description}"
    )
    return await _existing(pg, merchant_id, redemption_id)


async def _context(
    pg: PgConnection, merchant_id: str, member_id: str, rewards: list[Reward]
) -> RewardContext:
    balances = await member_balances(pg, merchant_id, member_id)
    limited = [r.id for r in rewards if r.per_member_limit is not None]
    stocked = {r.id: r.stock for r in rewards if r.stock is not None}
    mine = (
        await pg.fetch(COUNT_LIVE_REDEMPTIONS_BY_MEMBER, merchant_id, member_id, limited)
        if limited
        else []
    )
    used = (
        await pg.fetch(COUNT_LIVE_REDEMPTIONS_BY_REWARD, merchant_id, list(stocked))
        if stocked
        else []
    )
    used_by_reward = {r["reward_id"]: r["redemptions"] for r in used}
    return RewardContext(
        available_points=balances.available_points,
        tier=await member_tier(pg, merchant_id, member_id),
        redeemed_by_reward={r["reward_id"]: r["redemptions"] for r in mine},
        stock_left={
            reward_id: max(0, stock - used_by_reward.get(reward_id, 0))
            for reward_id, stock in stocked.items()
        },
    )


def _raise_refusal(option: QuoteOption, member_id: str, available_points: int) -> None:
    if not option.refusals:
        return
    first = option.refusals[0]  # not-enough-points comes last: the others matter more
    if first.reason == Reason.NOT_ENOUGH_POINTS:
        raise InsufficientPoints(
            f"member {member_id!r} has {available_points} points available, needs {option.points}",
            member_id=member_id,
            available_points=available_points,
        )
    raise RewardUnavailable(first.message, reward_id=option.reward_id, reason=first.reason)


def _new_code() -> str:
    groups = (
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_CHARS))
        for _ in range(CODE_GROUPS)
    )
    return "-".join(groups)


async def _by_key(
    pg: PgConnection, merchant_id: str, member_id: str, reward_id: str, key: str
) -> Redemption | None:
    row = await row_by_key(
        pg,
        SELECT_REDEMPTION_BY_KEY,
        merchant_id,
        key,
        member_id,
        "reward_id",
        reward_id,
        _key_reused,
    )
    return None if row is None else from_row(Redemption, row)


async def _by_id(pg: PgConnection, merchant_id: str, redemption_id: int) -> Redemption | None:
    row = await pg.fetchrow(SELECT_REDEMPTION_BY_ID, merchant_id, redemption_id)
    return None if row is None else from_row(Redemption, row)


async def _existing(pg: PgConnection, merchant_id: str, redemption_id: int) -> Redemption:
    found = await _by_id(pg, merchant_id, redemption_id)
    if found is None:
        raise NotFound(f"no redemption {redemption_id} for merchant {merchant_id!r}")
    return found


def _key_reused(reward_id: str, key: str) -> RewardUnavailable:
    return RewardUnavailable(
        f"key {key!r} already redeemed another reward or for another member",
        reward_id=reward_id,
        reason=Reason.KEY_REUSED,
    )
