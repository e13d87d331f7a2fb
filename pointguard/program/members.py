"""A member's program row (`program_members`), locked and decoded once per batch: the tier they
hold, their birthday, and what their orders taught (categories bought, promotion points), as a
typed record the rules read instead of a raw row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import msgspec

from pointguard.db import PgConnection
from pointguard.program.events import Event
from pointguard.program.orders.earning import Buyer
from pointguard.program.tiers.rules import TierStatus

# Rows are locked in the order of $2 (callers sort it): one global order for every worker. The
# update that locks a row also keeps the time of the member's newest event (for inactivity).
LOCK_PROGRAM_MEMBERS = """
INSERT INTO program_members AS m (merchant_id, member_id, last_activity_at)
SELECT $1, * FROM unnest($2::text[], $3::timestamptz[])
ON CONFLICT (merchant_id, member_id) DO UPDATE
SET last_activity_at = greatest(m.last_activity_at, excluded.last_activity_at)
RETURNING member_id, tier, tier_review_at, birthday, categories_bought,
          promotion_points::text AS promotion_points
"""

SELECT_MEMBER_EXISTS = """
SELECT EXISTS (SELECT 1 FROM ledger_accounts WHERE merchant_id = $1 AND member_id = $2)
    OR EXISTS (SELECT 1 FROM program_members WHERE merchant_id = $1 AND member_id = $2)
"""

SELECT_MEMBER_TIER = "SELECT tier FROM program_members WHERE merchant_id = $1 AND member_id = $2"


@dataclass(frozen=True)
class MemberRecord:
    member_id: str
    tier: TierStatus
    birthday: date | None
    categories_bought: frozenset[str]
    promotion_points: Mapping[str, int]  # extra points gained per promotion

    @property
    def buyer(self) -> Buyer:
        """What the order rules read of the member."""
        return Buyer(self.tier.tier, self.categories_bought, self.promotion_points)


async def lock_members(
    pg: PgConnection, merchant_id: str, events: Sequence[Event]
) -> dict[str, MemberRecord]:
    """Lock the members of `events` (at most one event each), making rows for new members and
    noting each event's time as the member's latest activity (the later of the two is kept)."""
    ordered = sorted(events, key=lambda event: event.member_id)
    rows = await pg.fetch(
        LOCK_PROGRAM_MEMBERS,
        merchant_id,
        [event.member_id for event in ordered],
        [event.occurred_at for event in ordered],
    )
    return {
        row["member_id"]: MemberRecord(
            member_id=row["member_id"],
            tier=TierStatus(row["tier"], row["tier_review_at"]),
            birthday=row["birthday"],
            categories_bought=frozenset(row["categories_bought"]),
            promotion_points=msgspec.json.decode(row["promotion_points"], type=dict[str, int]),
        )
        for row in rows
    }


async def member_exists(pg: PgConnection, merchant_id: str, member_id: str) -> bool:
    """Whether the merchant knows the member: the storefront told us of them, or they hold
    points."""
    return bool(await pg.fetchval(SELECT_MEMBER_EXISTS, merchant_id, member_id))


async def member_tier(pg: PgConnection, merchant_id: str, member_id: str) -> str | None:
    """The tier the member holds (None: no tier, or not a member of the program yet)."""
    tier = await pg.fetchval(SELECT_MEMBER_TIER, merchant_id, member_id)
    return None if tier is None else str(tier)
