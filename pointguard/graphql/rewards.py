"""What a customer does with the program from their account page: the rewards catalogue as it
stands for them, the monthly leaderboard, the program's rules in words, and the mutations
`createReferralLink`, `optIntoLeaderboard` and `redeemReward`. Customer tokens only; every
field and mutation is about the member of the token, never one named in the arguments."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from pointguard.db import PgConnection
from pointguard.errors import LeaderboardDisabled, QueryRefused
from pointguard.graphql.checkout import Refusal, ReserveResult, check_key, screened
from pointguard.graphql.context import RequestContext
from pointguard.graphql.customer import Referral, referral_of
from pointguard.graphql.problems import LeaderboardDisabled as LeaderboardDisabledProblem
from pointguard.graphql.problems import Problem, ReferralsDisabled, or_problem
from pointguard.program.document.in_words import program_in_words
from pointguard.program.referrals.records import create_referral_code
from pointguard.program.reports import leaderboard as board
from pointguard.program.rewards import redemption
from pointguard.program.rewards.catalogue import CatalogueEntry

Context = Info[RequestContext, None]
MAX_LEADERBOARD_ROWS = board.MAX_ROWS


@strawberry.type(description="A reward of the program, as it stands for the member now.")
class Reward:
    id: strawberry.ID
    name: str
    type: str = strawberry.field(
        description="fixed_discount, percent_off, free_shipping, free_product or points_plus_cash."
    )
    cost_points: int = strawberry.field(
        description="Its price; for points_plus_cash the price of one step of `gives`."
    )
    gives: str = strawberry.field(description="What it gives, in words.")
    affordable: bool = strawberry.field(description="The member's available points cover it.")
    points_short: int = strawberry.field(description="Points still missing; 0 when affordable.")
    tier_gated: bool = strawberry.field(description="It is for members of other tiers.")
    redeemable_from_account: bool = strawberry.field(
        description="`redeemReward` can redeem it (a free product); the others take money off a"
        " cart and are redeemed at checkout."
    )
    refusals: list[Refusal] = strawberry.field(
        description="Why it cannot be redeemed now, points aside: tier_gated, out_of_stock,"
        " per_member_limit_reached."
    )


@strawberry.type
class LeaderboardRow:
    rank: int
    alias: str
    points: int


@strawberry.type(description="Where the member stands, under their alias.")
class LeaderboardStanding:
    alias: str
    rank: int | None = strawberry.field(description="Null with no points earned this month.")
    points: int


@strawberry.type
class Leaderboard:
    period: str = strawberry.field(description="The month, YYYY-MM.")
    rows: list[LeaderboardRow] = strawberry.field(
        description="Opted-in members by points earned in the month, most first."
    )
    me: LeaderboardStanding | None = strawberry.field(
        description="The member's own place; null unless they opted in."
    )


@strawberry.type
class ProgramSection:
    title: str
    lines: list[str]


@strawberry.type(description="The program's rules in words a customer reads, as they are now.")
class ProgramInWords:
    name: str
    currency: str
    sections: list[ProgramSection]


@strawberry.type
class LeaderboardMembership:
    opted_in: bool
    alias: str | None = strawberry.field(description="The alias the member appears under.")


ReferralResult = Annotated[
    Referral | ReferralsDisabled, strawberry.union("CreateReferralLinkResult")
]
LeaderboardResult = Annotated[
    LeaderboardMembership | LeaderboardDisabledProblem,
    strawberry.union("OptIntoLeaderboardResult"),
]


async def rewards(info: Context) -> list[Reward]:
    """The program's rewards for the customer: what each gives, and whether they can have it."""
    merchant_id, member_id = info.context.customer()
    found = await info.context.read(
        lambda pg: redemption.member_catalogue(pg, merchant_id, member_id, info.context.now)
    )
    return [_reward(entry) for entry in found]


async def leaderboard(info: Context, period: str, first: int = 10) -> Leaderboard:
    """The month's leaderboard (`period` YYYY-MM) of opted-in members, and the customer's own
    place if they opted in. An error `leaderboard_disabled` when the program has none."""
    merchant_id, member_id = info.context.customer()
    month = board.parse_month(period)
    if not 1 <= first <= MAX_LEADERBOARD_ROWS:
        raise QueryRefused(f"leaderboard(first:) must be 1 to {MAX_LEADERBOARD_ROWS}, not {first}")

    async def load(
        pg: PgConnection,
    ) -> tuple[list[board.LeaderboardRow], board.Standing | None]:
        if not await board.leaderboard_enabled(pg, merchant_id, info.context.now):
            raise LeaderboardDisabled("this shop's program has no leaderboard")
        rows = await board.monthly_leaderboard(pg, merchant_id, month, limit=first)
        return rows, await board.member_standing(pg, merchant_id, member_id, month)

    rows, mine = await info.context.read(load)
    return Leaderboard(
        period=month.strftime("%Y-%m"),
        rows=[LeaderboardRow(rank=r.rank, alias=r.alias, points=r.points) for r in rows],
        me=None
        if mine is None
        else LeaderboardStanding(alias=mine.alias, rank=mine.rank, points=mine.points),
    )


async def program(info: Context) -> ProgramInWords:
    """The program in force: how points are earned, released and expire, tiers, rewards,
    referrals, challenges, each section in lines a customer reads."""
    info.context.customer()
    in_force = await info.context.program()
    return ProgramInWords(
        name=in_force.name,
        currency=in_force.currency,
        sections=[
            ProgramSection(title=s.title, lines=list(s.lines))
            for s in program_in_words(in_force, info.context.now)
        ],
    )


async def create_referral_link(info: Context) -> ReferralResult:
    """The customer's referral code and link, made on the first call; every call after gives
    the same code, so a retry needs no idempotency key."""
    merchant_id, member_id = info.context.customer()
    made = await or_problem(
        lambda: info.context.write(
            lambda pg: create_referral_code(pg, merchant_id, member_id, info.context.now)
        )
    )
    if isinstance(made, Problem):
        return made  # type: ignore[return-value]
    made_referral = referral_of(made)
    assert made_referral is not None  # create_referral_code always has a code
    return made_referral


async def opt_into_leaderboard(info: Context, opt_in: bool) -> LeaderboardResult:
    """Join the monthly leaderboard under a random alias (kept if joined before), or leave it
    (`optIn: false`): at once, and the same answer when repeated, so no idempotency key."""
    merchant_id, member_id = info.context.customer()
    if not opt_in:
        await info.context.write(lambda pg: board.leave_leaderboard(pg, merchant_id, member_id))
        return LeaderboardMembership(opted_in=False, alias=None)
    alias = await or_problem(
        lambda: info.context.write(
            lambda pg: board.join_leaderboard(pg, merchant_id, member_id, info.context.now)
        )
    )
    if isinstance(alias, Problem):
        return alias  # type: ignore[return-value]
    return LeaderboardMembership(opted_in=True, alias=alias)


async def redeem_reward(
    info: Context, reward_id: strawberry.ID, idempotency_key: str
) -> ReserveResult:
    """Redeem a reward from the account page, with no cart: only a reward that takes nothing
    off a cart (a free product); the others are `RewardUnavailable` (reason needs_checkout).
    The points are reserved for 7 days; apply the `code` at a checkout, where the storefront
    captures it. The same `idempotencyKey` again answers the first redemption."""
    merchant_id, member_id = info.context.customer()
    check_key(idempotency_key)
    return await screened(  # type: ignore[return-value]
        info,
        member_id,
        str(reward_id),
        idempotency_key,
        lambda pg: redemption.redeem_from_account(
            pg,
            merchant_id,
            member_id,
            str(reward_id),
            key=idempotency_key,
            now=info.context.now,
        ),
    )


def _reward(entry: CatalogueEntry) -> Reward:
    reward = entry.reward
    return Reward(
        id=strawberry.ID(reward.id),
        name=reward.name,
        type=entry.type,
        cost_points=reward.cost_points,
        gives=entry.gives,
        affordable=entry.affordable,
        points_short=entry.points_short,
        tier_gated=entry.tier_gated,
        redeemable_from_account=not entry.needs_checkout,
        refusals=[Refusal(code=r.reason.value, message=r.message) for r in entry.refusals],
    )
