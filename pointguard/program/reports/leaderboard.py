"""The monthly leaderboard: opt-in and pseudonymous.

A member appears only after opting in, and only under a random alias (never their id or name);
opting out removes them at once. The month's ranking is by points earned in that month's earn
entries (pending or available; points taken back later do not count against it), ties broken
by alias. The program's `leaderboard.enabled` switches it on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pointguard.db import PgConnection
from pointguard.errors import LeaderboardDisabled
from pointguard.program.dates import add_months
from pointguard.program.document.versions import program_in_force

ALIAS_WORDS = ("Otter", "Falcon", "Maple", "Comet", "Harbor", "Juniper", "Lynx", "Pebble")
MAX_ROWS = 100

UPSERT_LEADERBOARD_ALIAS = """
INSERT INTO program_members AS m (merchant_id, member_id, leaderboard_alias) VALUES ($1, $2, $3)
ON CONFLICT (merchant_id, member_id)
DO UPDATE SET leaderboard_alias = coalesce(m.leaderboard_alias, EXCLUDED.leaderboard_alias)
RETURNING leaderboard_alias
"""

UPDATE_LEADERBOARD_OPT_OUT = """
UPDATE program_members SET leaderboard_alias = NULL WHERE merchant_id = $1 AND member_id = $2
"""

SELECT_LEADERBOARD_RANKING = """
SELECT m.leaderboard_alias AS alias, sum(p.amount_points)::bigint AS points
FROM program_members m
JOIN ledger_accounts a ON a.merchant_id = m.merchant_id AND a.member_id = m.member_id
JOIN ledger_postings p ON p.merchant_id = a.merchant_id AND p.account_id = a.account_id
JOIN ledger_entries e ON e.merchant_id = p.merchant_id AND e.entry_id = p.entry_id
WHERE m.merchant_id = $1 AND m.leaderboard_alias IS NOT NULL AND p.account_id > 0
  AND e.kind = 'earn' AND e.created_at >= $2 AND e.created_at < $3
GROUP BY m.leaderboard_alias
ORDER BY points DESC, alias
LIMIT $4
"""


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    alias: str
    points: int


async def join_leaderboard(
    pg: PgConnection, merchant_id: str, member_id: str, now: datetime
) -> str:
    """Opt the member in; returns the alias they appear under (kept if they had one)."""
    program = (await program_in_force(pg, merchant_id, now)).program
    if not program.leaderboard.enabled:
        raise LeaderboardDisabled(f"merchant {merchant_id!r} has no leaderboard")
    alias = f"{secrets.choice(ALIAS_WORDS)}-{secrets.token_hex(3)}"
    return str(await pg.fetchval(UPSERT_LEADERBOARD_ALIAS, merchant_id, member_id, alias))


async def leave_leaderboard(pg: PgConnection, merchant_id: str, member_id: str) -> None:
    await pg.execute(UPDATE_LEADERBOARD_OPT_OUT, merchant_id, member_id)


async def monthly_leaderboard(
    pg: PgConnection, merchant_id: str, month: datetime, *, limit: int = 10
) -> list[LeaderboardRow]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    rows = await pg.fetch(
        SELECT_LEADERBOARD_RANKING, merchant_id, start, add_months(start, 1), min(limit, MAX_ROWS)
    )
    return [LeaderboardRow(i + 1, r["alias"], r["points"]) for i, r in enumerate(rows)]
