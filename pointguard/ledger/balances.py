"""Balances: a member's, the merchant's system accounts', and outstanding liability.

System balances are the sealer's checkpoint plus the postings of entries not sealed yet, read
in one statement so the sum is exact even while the sealer runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pointguard.db import PgConnection
from pointguard.ledger.accounts import SYSTEM_ACCOUNT_IDS, SYSTEM_KIND_BY_ID, AccountKind

SELECT_MEMBER_BALANCES = """
SELECT kind, balance_points FROM ledger_accounts WHERE merchant_id = $1 AND member_id = $2
"""

SELECT_MEMBERS_BALANCES = """
SELECT member_id, kind, balance_points FROM ledger_accounts
WHERE merchant_id = $1 AND member_id = ANY($2::text[])
"""

SELECT_SYSTEM_BALANCES = """
SELECT account_id, sum(points)::bigint AS balance FROM (
    SELECT account_id, sealed_balance_points AS points
    FROM ledger_system_balances WHERE merchant_id = $1
    UNION ALL
    SELECT p.account_id, p.amount_points
    FROM ledger_entries e
    JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
    WHERE e.merchant_id = $1 AND e.seal_seq IS NULL AND p.account_id < 0
) s GROUP BY account_id
"""

SELECT_LIABILITY = """
SELECT coalesce(sum(balance_points), 0)::bigint FROM ledger_accounts WHERE merchant_id = $1
"""

SELECT_EXPIRING_POINTS = """
SELECT member_id, sum(available_points)::bigint AS points, min(expires_at) AS first_expires_at
FROM ledger_lots
WHERE merchant_id = $1 AND available_points > 0 AND expires_at IS NOT NULL
  AND expires_at <= $2 AND ($3::text IS NULL OR member_id = $3)
GROUP BY member_id ORDER BY min(expires_at), member_id
"""


@dataclass(frozen=True)
class MemberBalances:
    available_points: int = 0
    pending_points: int = 0
    reserved_points: int = 0

    @property
    def total_points(self) -> int:
        return self.available_points + self.pending_points + self.reserved_points


@dataclass(frozen=True)
class ExpiringPoints:
    member_id: str
    points: int
    first_expires_at: datetime


async def member_balances(pg: PgConnection, merchant_id: str, member_id: str) -> MemberBalances:
    by_kind = {
        r["kind"]: r["balance_points"]
        for r in await pg.fetch(SELECT_MEMBER_BALANCES, merchant_id, member_id)
    }
    return _balances(by_kind)


def _balances(by_kind: dict[str, int]) -> MemberBalances:
    return MemberBalances(
        available_points=by_kind.get(AccountKind.AVAILABLE.value, 0),
        pending_points=by_kind.get(AccountKind.PENDING.value, 0),
        reserved_points=by_kind.get(AccountKind.RESERVED.value, 0),
    )


async def members_balances(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, MemberBalances]:
    """The balances of each of `member_ids` who has accounts, in one statement."""
    by_member: dict[str, dict[str, int]] = {}
    for r in await pg.fetch(SELECT_MEMBERS_BALANCES, merchant_id, sorted(set(member_ids))):
        by_member.setdefault(r["member_id"], {})[r["kind"]] = r["balance_points"]
    return {member_id: _balances(by_kind) for member_id, by_kind in by_member.items()}


async def system_balances(pg: PgConnection, merchant_id: str) -> dict[AccountKind, int]:
    found = {
        SYSTEM_KIND_BY_ID[r["account_id"]]: r["balance"]
        for r in await pg.fetch(SELECT_SYSTEM_BALANCES, merchant_id)
    }
    return {kind: found.get(kind, 0) for kind in SYSTEM_ACCOUNT_IDS}


async def outstanding_liability(pg: PgConnection, merchant_id: str) -> int:
    """Points the merchant owes its members: available + pending + reserved, all members."""
    return int(await pg.fetchval(SELECT_LIABILITY, merchant_id))


async def expiring_within(
    pg: PgConnection, merchant_id: str, *, now: datetime, days: int, member_id: str | None = None
) -> list[ExpiringPoints]:
    """Available points that expire within `days` of `now`, per member (for reminders)."""
    rows = await pg.fetch(
        SELECT_EXPIRING_POINTS, merchant_id, now + timedelta(days=days), member_id
    )
    return [ExpiringPoints(r["member_id"], r["points"], r["first_expires_at"]) for r in rows]
