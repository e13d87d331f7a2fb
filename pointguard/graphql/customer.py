"""The customer's own view (`me`): balances, tier, history in the ledger's words, points about
to expire, rewards within reach, their referral code, challenges and badges. Every field reads
the member of the customer token, never one named in the query."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from pointguard.db import PgConnection
from pointguard.errors import QueryRefused
from pointguard.graphql.context import RequestContext
from pointguard.ledger import (
    AccountKind,
    EntryKind,
    LotState,
    expiring_within,
    lot_states,
    member_balances,
    member_history,
)
from pointguard.program.challenges.completions import member_badges, member_challenges
from pointguard.program.members import member_tier
from pointguard.program.referrals.records import MemberReferrals, member_referrals
from pointguard.program.rewards.suggestions import member_suggestions
from pointguard.program.tiers.review import member_tier_progress
from pointguard.program.tiers.rules import TierProgress

MAX_PAGE = 100
MAX_EXPIRY_DAYS = 366

Context = Info[RequestContext, None]


@strawberry.type(description="Points by where they stand.")
class Balance:
    available: int = strawberry.field(description="Spendable now.")
    pending: int = strawberry.field(
        description="Earned, released when the return window has passed (or a review clears)."
    )
    reserved: int = strawberry.field(description="Set aside for a checkout in progress.")


@strawberry.type
class Tier:
    name: str
    benefits: list[str] = strawberry.field(description="What the tier gives, in words.")


@strawberry.type
class NextTier:
    name: str
    remaining: int = strawberry.field(
        description="Left to reach it: minor units of spend, or points, per the program's basis."
    )
    period_end: datetime = strawberry.field(description="When the tier is next reviewed.")


@strawberry.type(description="One movement of the member's points, newest first.")
class HistoryEntry:
    id: strawberry.ID
    at: datetime
    kind: str
    description: str
    available_change: int
    pending_change: int
    reserved_change: int
    status: str | None = strawberry.field(
        description="For an earn: pending, held (for a fraud review) or released."
    )


@strawberry.type
class HistoryPage:
    entries: list[HistoryEntry]
    next_cursor: str | None = strawberry.field(description="`after` for the next, older page.")


@strawberry.type
class ExpiringPoints:
    points: int
    first_expires_at: datetime


@strawberry.type(description="A reward the member can afford, or nearly.")
class Suggestion:
    reward_id: strawberry.ID
    name: str
    cost_points: int
    points_short: int


@strawberry.type(
    description="The member's referral code, to share. `me.referral` is null until"
    " `createReferralLink` made the code, and when the program has no referrals."
)
class Referral:
    code: str = strawberry.field(description="The same code ever after.")
    link: str | None = strawberry.field(
        description="The code in the program's `referrals.link_pattern`; null without one (the"
        " storefront builds its own link from the code)."
    )
    successful_referrals: int = strawberry.field(
        description="Friends whose first order rewarded the member (returned ones not counted)."
    )


def referral_of(found: MemberReferrals) -> Referral | None:
    """The member's referral; None while they have no code."""
    if found.code is None:
        return None
    return Referral(code=found.code, link=found.link, successful_referrals=found.successful)


@strawberry.type(description="A challenge of the program, and how far the member is.")
class Challenge:
    id: strawberry.ID
    name: str
    goal: str = strawberry.field(
        description="orders, spend_minor, referrals, reviews, streak_weeks or streak_months."
    )
    target: int
    progress: int = strawberry.field(description="Counted now, in the goal's unit.")
    completed: bool
    ends_at: datetime | None = strawberry.field(
        description="When the progress counted now starts to fall unless the challenge is"
        " completed first (windows roll: the oldest counted activity leaves the window; a"
        " streak breaks after the next week or month without an order); null when completed"
        " or when nothing counts yet."
    )
    bonus_points: int
    badge: str


@strawberry.type(description="A badge the member won by completing a challenge.")
class Badge:
    name: str
    challenge_id: strawberry.ID
    earned_at: datetime


@strawberry.type(description="The customer of the token.")
class Me:
    member_id: strawberry.ID
    merchant_id: strawberry.Private[str]

    @strawberry.field
    async def balance(self, info: Context) -> Balance:
        found = await info.context.read(
            lambda pg: member_balances(pg, self.merchant_id, str(self.member_id))
        )
        return Balance(
            available=found.available_points,
            pending=found.pending_points,
            reserved=found.reserved_points,
        )

    @strawberry.field
    async def tier(self, info: Context) -> Tier | None:
        merchant_id, member_id = self.merchant_id, str(self.member_id)
        name = await info.context.read(lambda pg: member_tier(pg, merchant_id, member_id))
        program = await info.context.program()
        level = next((t for t in program.tiers.levels if t.name == name), None)
        if level is None:  # no tier yet, or one the program no longer has
            return None
        benefits = [f"{level.multiplier} times the points"] if level.multiplier != 1 else []
        benefits += ["free shipping"] if level.free_shipping else []
        return Tier(name=level.name, benefits=benefits + list(level.perks))

    @strawberry.field
    async def next_tier(self, info: Context) -> NextTier | None:
        progress = await _tier_progress(info, self.merchant_id, str(self.member_id))
        if progress.next_tier is None or progress.review_at is None:
            return None
        return NextTier(
            name=progress.next_tier, remaining=progress.amount_left, period_end=progress.review_at
        )

    @strawberry.field
    async def history(
        self, info: Context, first: int = 20, after: str | None = None
    ) -> HistoryPage:
        if not 1 <= first <= MAX_PAGE:
            raise QueryRefused(f"history(first:) must be 1 to {MAX_PAGE}, not {first}")
        before = _cursor(after)

        async def load(pg: PgConnection) -> tuple[list[HistoryEntry], int | None]:
            page = await member_history(
                pg, self.merchant_id, str(self.member_id), limit=first, before=before
            )
            earns = [e.entry_id for e in page.entries if e.kind is EntryKind.EARN]
            lots = await lot_states(pg, self.merchant_id, earns)
            return [
                HistoryEntry(
                    id=strawberry.ID(str(e.entry_id)),
                    at=e.created_at,
                    kind=e.kind.value,
                    description=e.description,
                    available_change=e.member_delta(AccountKind.AVAILABLE),
                    pending_change=e.member_delta(AccountKind.PENDING),
                    reserved_change=e.member_delta(AccountKind.RESERVED),
                    status=_earn_status(lots.get(e.entry_id)),
                )
                for e in page.entries
            ], page.next_cursor

        entries, next_cursor = await info.context.read(load)
        return HistoryPage(
            entries=entries, next_cursor=None if next_cursor is None else str(next_cursor)
        )

    @strawberry.field
    async def expiring_soon(self, info: Context, days: int = 30) -> ExpiringPoints | None:
        if not 1 <= days <= MAX_EXPIRY_DAYS:
            raise QueryRefused(f"expiringSoon(days:) must be 1 to {MAX_EXPIRY_DAYS}, not {days}")
        found = await info.context.read(
            lambda pg: expiring_within(
                pg, self.merchant_id, now=info.context.now, days=days, member_id=str(self.member_id)
            )
        )
        if not found:
            return None
        return ExpiringPoints(points=found[0].points, first_expires_at=found[0].first_expires_at)

    @strawberry.field
    async def suggestions(self, info: Context) -> list[Suggestion]:
        found = await info.context.read(
            lambda pg: member_suggestions(
                pg, self.merchant_id, str(self.member_id), info.context.now
            )
        )
        return [
            Suggestion(
                reward_id=strawberry.ID(s.reward_id),
                name=s.name,
                cost_points=s.cost_points,
                points_short=s.points_short,
            )
            for s in found
        ]

    @strawberry.field
    async def referral(self, info: Context) -> Referral | None:
        found = await info.context.read(
            lambda pg: member_referrals(pg, self.merchant_id, str(self.member_id), info.context.now)
        )
        return None if found is None else referral_of(found)

    @strawberry.field
    async def challenges(self, info: Context) -> list[Challenge]:
        found = await info.context.read(
            lambda pg: member_challenges(
                pg, self.merchant_id, str(self.member_id), info.context.now
            )
        )
        return [
            Challenge(
                id=strawberry.ID(c.challenge.id),
                name=c.challenge.name,
                goal=c.challenge.goal,
                target=c.challenge.target,
                progress=c.progress.progress,
                completed=c.completed_at is not None,
                ends_at=c.lapses_at,
                bonus_points=c.challenge.bonus_points,
                badge=c.challenge.badge,
            )
            for c in found
        ]

    @strawberry.field
    async def badges(self, info: Context) -> list[Badge]:
        found = await info.context.read(
            lambda pg: member_badges(pg, self.merchant_id, str(self.member_id))
        )
        return [
            Badge(name=b.name, challenge_id=strawberry.ID(b.challenge_id), earned_at=b.earned_at)
            for b in found
        ]


def me(info: Context) -> Me:
    merchant_id, member_id = info.context.customer()
    return Me(member_id=strawberry.ID(member_id), merchant_id=merchant_id)


async def _tier_progress(info: Context, merchant_id: str, member_id: str) -> TierProgress:
    program = await info.context.program()
    now = info.context.now
    return await info.context.read(
        lambda pg: member_tier_progress(pg, merchant_id, member_id, program, now)
    )


def _earn_status(lot: LotState | None) -> str | None:
    if lot is None:
        return None
    if lot.pending_points == 0:
        return "released"
    return "held" if lot.held else "pending"


def _cursor(after: str | None) -> int | None:
    if after is None:
        return None
    if not after.isdigit():
        raise QueryRefused(
            f"history(after:) takes a nextCursor from an earlier page, not {after!r}"
        )
    return int(after)
