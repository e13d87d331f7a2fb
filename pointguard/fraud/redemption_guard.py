"""Screening a checkout's redemption: a ring cashes out through its cleanest account. A member
who pays with the card, or uses the device, of a member under review, frozen, or confirmed
abusive by a reviewer may not spend points until a reviewer looks: the checkout is refused and
the member's case opened (or joined), with the link named as the reason. A shared address or
network is not enough: households share them honestly (as for the hard rules).

The screen reads the identity graph's index (`links.linked_members`), one statement for the
linked members' standing; the refusal is recorded by the caller in a transaction of its own,
so that it stays when the refused reservation is rolled back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from pointguard.db import PgConnection
from pointguard.fraud.cases import ReviewStanding, load_review_standings
from pointguard.fraud.identity import LinkKind
from pointguard.fraud.links import linked_members
from pointguard.fraud.policy import GuardPolicy

MAX_REASONS = 3
CHECKOUT_LINKS = frozenset({LinkKind.CARD, LinkKind.DEVICE})

# Which of these members a reviewer confirmed abusive (open cases and freezes are the review
# standings of `cases.py`).
SELECT_CONFIRMED_MEMBERS = """
SELECT DISTINCT member_id FROM fraud_cases
WHERE merchant_id = $1 AND member_id = ANY($2::text[]) AND status = 'confirmed'
"""

INSERT_REFUSED_REDEMPTION = """
INSERT INTO fraud_refused_redemptions
    (merchant_id, idempotency_key, member_id, reward_id, reasons, case_id, refused_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
"""

SELECT_CASE_REFUSED_REDEMPTIONS = """
SELECT idempotency_key, reward_id, reasons::text AS reasons, refused_at
FROM fraud_refused_redemptions WHERE merchant_id = $1 AND case_id = $2
ORDER BY refused_at, idempotency_key
"""


@dataclass(frozen=True)
class RefusedRedemption:
    idempotency_key: str
    reward_id: str
    reasons: list[str]
    refused_at: datetime


async def redemption_risk(
    pg: PgConnection, merchant_id: str, member_id: str, policy: GuardPolicy
) -> list[str]:
    """Why this member's checkout must wait for a reviewer, in words; empty when it need not."""
    if not (policy.enabled and policy.hold_redemptions_linked_to_flagged):
        return []
    linked = await linked_members(pg, merchant_id, member_id)
    sharing = [m for m in linked if CHECKOUT_LINKS & set(m.shared)]
    if not sharing:
        return []
    ids = [m.member_id for m in sharing]
    standings = await load_review_standings(pg, merchant_id, ids)
    confirmed = {r["member_id"] for r in await pg.fetch(SELECT_CONFIRMED_MEMBERS, merchant_id, ids)}
    flagged = {m: _flag(standings.get(m), m in confirmed) for m in ids}
    reasons = [
        f"shares {_kinds(m.shared)} with member {m.member_id}, {flagged[m.member_id]}"
        for m in sharing
        if flagged[m.member_id]
    ]
    return reasons[:MAX_REASONS]


async def record_refusal(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    *,
    key: str,
    reward_id: str,
    reasons: Sequence[str],
    case_id: int,
    now: datetime,
) -> None:
    await pg.execute(
        INSERT_REFUSED_REDEMPTION,
        merchant_id,
        key,
        member_id,
        reward_id,
        msgspec.json.encode(list(reasons)).decode(),
        case_id,
        now,
    )


async def case_refused_redemptions(
    pg: PgConnection, merchant_id: str, case_id: int
) -> list[RefusedRedemption]:
    """The checkouts refused into a case, oldest first."""
    return [
        RefusedRedemption(
            r["idempotency_key"], r["reward_id"], msgspec.json.decode(r["reasons"]), r["refused_at"]
        )
        for r in await pg.fetch(SELECT_CASE_REFUSED_REDEMPTIONS, merchant_id, case_id)
    ]


def _flag(standing: ReviewStanding | None, confirmed: bool) -> str:
    """The worst of what a reviewer found about a linked member, in words ('' for nothing)."""
    if confirmed:
        return "confirmed abusive by a reviewer"
    if standing is None:
        return ""
    return "frozen by a reviewer" if standing.frozen else "under review"


def _kinds(kinds: Sequence[LinkKind]) -> str:
    hard = sorted(k.value for k in kinds if k in CHECKOUT_LINKS)
    return " and ".join(f"a {kind}" for kind in hard)
