"""The program's record of referrals (`program_referrals`) and members' referral codes: loaded
for the rules in `referrals/rules.py`, and stored as they decide."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.errors import ReferralsDisabled
from pointguard.program.document.versions import program_in_force
from pointguard.program.events import OrderPaid
from pointguard.program.referrals.rules import (
    Referral,
    ReferralEvent,
    ReferralStatus,
    ReferrerCounts,
    referral_link,
)

CODE_BYTES = 8

INSERT_REFERRAL_MEMBER = """
INSERT INTO program_members (merchant_id, member_id) VALUES ($1, $2)
ON CONFLICT (merchant_id, member_id) DO NOTHING
"""

SET_REFERRAL_CODE = """
UPDATE program_members SET referral_code = coalesce(referral_code, $3)
WHERE merchant_id = $1 AND member_id = $2
RETURNING referral_code
"""

# A code the storefront already gave the member (say, from a previous loyalty app) becomes
# theirs if they have none and no other member holds it.
SET_OWN_REFERRAL_CODE = """
UPDATE program_members m SET referral_code = $3
WHERE m.merchant_id = $1 AND m.member_id = $2 AND m.referral_code IS NULL
  AND NOT EXISTS (SELECT 1 FROM program_members o WHERE o.merchant_id = $1 AND o.referral_code = $3)
RETURNING m.member_id
"""

SELECT_MEMBER_REFERRAL = """
SELECT (SELECT referral_code FROM program_members WHERE merchant_id = $1 AND member_id = $2)
           AS code,
       (SELECT count(*) FROM program_referrals
        WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded') AS successful
"""

SELECT_MEMBER_BY_REFERRAL_CODE = """
SELECT member_id FROM program_members WHERE merchant_id = $1 AND referral_code = $2
"""

COUNT_EARLIER_ORDERS = """
SELECT count(*) FROM program_orders
WHERE merchant_id = $1 AND member_id = $2 AND order_id <> $3
"""

INSERT_REFERRAL = """
INSERT INTO program_referrals (merchant_id, referee_id, referrer_id, status, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, referee_id) DO NOTHING
"""

LOCK_REFERRALS_OF = """
SELECT referee_id, referrer_id, status, referee_rewarded, first_order_id, rewarded_at
FROM program_referrals
WHERE merchant_id = $1 AND referee_id = ANY($2::text[])
ORDER BY referee_id
FOR UPDATE
"""

UPDATE_REFERRAL = """
UPDATE program_referrals
SET status = $3, referee_rewarded = $4, first_order_id = $5, rewarded_at = $6
WHERE merchant_id = $1 AND referee_id = $2
"""

LOCK_REWARDED_REFERRALS_OF = """
SELECT referee_id FROM program_referrals
WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded'
ORDER BY referee_id
FOR UPDATE
"""

UPDATE_REFERRALS_REVERSED = """
UPDATE program_referrals SET status = 'reversed', rewarded_at = NULL
WHERE merchant_id = $1 AND referee_id = ANY($2::text[])
"""

LOCK_REFERRER = """
SELECT member_id FROM program_members WHERE merchant_id = $1 AND member_id = $2 FOR UPDATE
"""

COUNT_REFERRER_REWARDS = """
SELECT count(*) FILTER (WHERE rewarded_at >= $3) AS this_month, count(*) AS successful
FROM program_referrals
WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded'
"""


class StoredReferral(NamedTuple):
    """`UPDATE_REFERRAL`'s parameters, in `$n` order."""

    merchant_id: str
    referee_id: str
    status: str
    referee_rewarded: bool
    first_order_id: str | None
    rewarded_at: datetime | None


async def referral_code(pg: PgConnection, merchant_id: str, member_id: str) -> str:
    """The member's referral code, made on first request."""
    await pg.execute(INSERT_REFERRAL_MEMBER, merchant_id, member_id)
    code = secrets.token_urlsafe(CODE_BYTES)
    return str(await pg.fetchval(SET_REFERRAL_CODE, merchant_id, member_id, code))


class MemberReferrals(NamedTuple):
    """What the member sees of their referrals."""

    code: str | None  # None until the member asks for one (`create_referral_code`)
    link: str | None  # the program's `link_pattern` with the code; None without either
    successful: int  # referrals that rewarded the member (not reversed)


async def member_referrals(
    pg: PgConnection, merchant_id: str, member_id: str, now: datetime
) -> MemberReferrals | None:
    """The member's code and link, if they have a code, and their successful referrals; None
    when the program in force has no referrals. Changes nothing."""
    program = (await program_in_force(pg, merchant_id, now)).program
    if program.referrals is None:
        return None
    row = await pg.fetchrow(SELECT_MEMBER_REFERRAL, merchant_id, member_id)
    code = row["code"]
    link = None if code is None else referral_link(program, code)
    return MemberReferrals(code, link, row["successful"])


async def create_referral_code(
    pg: PgConnection, merchant_id: str, member_id: str, now: datetime
) -> MemberReferrals:
    """The member's code (made if they have none; the same one ever after) and link;
    `ReferralsDisabled` when the program in force has no referrals: no code would pay."""
    program = (await program_in_force(pg, merchant_id, now)).program
    if program.referrals is None:
        raise ReferralsDisabled(f"merchant {merchant_id!r} has no referral program")
    await referral_code(pg, merchant_id, member_id)
    found = await member_referrals(pg, merchant_id, member_id, now)
    assert found is not None and found.code is not None  # the same program, in one transaction
    return found


async def register_own_code(pg: PgConnection, merchant_id: str, member_id: str, code: str) -> bool:
    """Make `code` the member's referral code, so that links the storefront handed out before
    keep working; False if the member has a code already or another member holds this one."""
    return await pg.fetchval(SET_OWN_REFERRAL_CODE, merchant_id, member_id, code) is not None


async def load_code_owner(pg: PgConnection, merchant_id: str, code: str) -> str | None:
    """The member whose referral code `code` is."""
    owner = await pg.fetchval(SELECT_MEMBER_BY_REFERRAL_CODE, merchant_id, code)
    return None if owner is None else str(owner)


async def has_earlier_orders(pg: PgConnection, merchant_id: str, event: ReferralEvent) -> bool:
    """Whether the member paid an order before this event (this order itself aside)."""
    order_id = event.order_id if isinstance(event, OrderPaid) else ""
    return bool(await pg.fetchval(COUNT_EARLIER_ORDERS, merchant_id, event.member_id, order_id))


async def store_attachment(
    pg: PgConnection, merchant_id: str, referral: Referral, at: datetime
) -> None:
    """Record a new referral; a referee already referred keeps the first."""
    await pg.execute(
        INSERT_REFERRAL,
        merchant_id,
        referral.referee_id,
        referral.referrer_id,
        referral.status.value,
        at,
    )


async def lock_referrals(
    pg: PgConnection, merchant_id: str, referee_ids: Sequence[str]
) -> dict[str, Referral]:
    """The referrals of these referees, locked (one statement for a whole round)."""
    rows = await pg.fetch(LOCK_REFERRALS_OF, merchant_id, sorted(set(referee_ids)))
    return {
        row["referee_id"]: Referral(
            referee_id=row["referee_id"],
            referrer_id=row["referrer_id"],
            status=ReferralStatus(row["status"]),
            referee_rewarded=row["referee_rewarded"],
            first_order_id=row["first_order_id"],
            rewarded_at=row["rewarded_at"],
        )
        for row in rows
    }


async def lock_referrer_counts(
    pg: PgConnection, merchant_id: str, referrer_id: str, at: datetime
) -> ReferrerCounts:
    """The referrer's rewarded referrals in the calendar month of `at` and ever, counted under
    the referrer's lock so that two referees' orders cannot both take the last place of a cap."""
    await pg.fetchval(LOCK_REFERRER, merchant_id, referrer_id)
    at = at.astimezone(UTC)
    month_start = datetime(at.year, at.month, 1, tzinfo=UTC)
    row = await pg.fetchrow(COUNT_REFERRER_REWARDS, merchant_id, referrer_id, month_start)
    return ReferrerCounts(row["this_month"], row["successful"])


async def store_referral(pg: PgConnection, merchant_id: str, referral: Referral) -> None:
    stored = StoredReferral(
        merchant_id=merchant_id,
        referee_id=referral.referee_id,
        status=referral.status.value,
        referee_rewarded=referral.referee_rewarded,
        first_order_id=referral.first_order_id,
        rewarded_at=referral.rewarded_at,
    )
    await pg.execute(UPDATE_REFERRAL, *stored)


async def reverse_referrals_of(pg: PgConnection, merchant_id: str, referrer_id: str) -> list[str]:
    """Mark every rewarded referral of the referrer reversed (a reviewer found the referrer
    abusive); return the referees, whose referrer rewards the caller takes back."""
    referees = [
        row["referee_id"]
        for row in await pg.fetch(LOCK_REWARDED_REFERRALS_OF, merchant_id, referrer_id)
    ]
    if referees:
        await pg.execute(UPDATE_REFERRALS_REVERSED, merchant_id, referees)
    return referees
