"""The monthly leaderboard: opt-in and pseudonymous.

A member appears only after opting in, and only under a random alias (never their id or name);
opting out removes them at once. The month's ranking is by points earned in that month's earn
entries (pending or available; points taken back later do not count against it), ties broken
by alias. The program's `leaderboard.enabled` switches it on. A month is named `YYYY-MM`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pointguard.db import PgConnection
from pointguard.errors import InvalidPeriod, LeaderboardDisabled
from pointguard.program.dates import add_months
from pointguard.program.document.versions import program_in_force

MONTH_PATTERN = re.compile(r"(\d{4})-(\d{2})")
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

# Points each opted-in alias earned in [$2, $3): the ranking and a member's standing read it.
SUM_MONTH_EARNS_BY_ALIAS = """
SELECT m.leaderboard_alias AS alias, sum(p.amount_points)::bigint AS points
FROM program_members m
JOIN ledger_accounts a ON a.merchant_id = m.merchant_id AND a.member_id = m.member_id
JOIN ledger_postings p ON p.merchant_id = a.merchant_id AND p.account_id = a.account_id
JOIN ledger_entries e ON e.merchant_id = p.merchant_id AND e.entry_id = p.entry_id
WHERE m.merchant_id = $1 AND m.leaderboard_alias IS NOT NULL AND p.account_id > 0
  AND e.kind = 'earn' AND e.created_at >= $2 AND e.created_at < $3
GROUP BY m.leaderboard_alias
"""

SELECT_LEADERBOARD_RANKING = SUM_MONTH_EARNS_BY_ALIAS + "ORDER BY points DESC, alias LIMIT $4"

SELECT_LEADERBOARD_ALIAS = """
SELECT leaderboard_alias FROM program_members WHERE merchant_id = $1 AND member_id = $2
"""

# The member's place: one more than the aliases ahead of them (more points, or as many and an
# alias sorting first), as the ranking orders them.
SELECT_LEADERBOARD_STANDING = f"""
WITH ranking AS ({SUM_MONTH_EARNS_BY_ALIAS})
SELECT mine.points,
       (SELECT count(*) FROM ranking r
        WHERE r.points > mine.points OR (r.points = mine.points AND r.alias < mine.alias)) + 1
           AS rank
FROM ranking mine WHERE mine.alias = $4
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
    if not await leaderboard_enabled(pg, merchant_id, now):
        raise LeaderboardDisabled(f"merchant {merchant_id!r} has no leaderboard")
    alias = f"{secrets.choice(ALIAS_WORDS)}-{secrets.token_hex(3)}"
    return str(await pg.fetchval(UPSERT_LEADERBOARD_ALIAS, merchant_id, member_id, alias))


async def leave_leaderboard(pg: PgConnection, merchant_id: str, member_id: str) -> None:
    await pg.execute(UPDATE_LEADERBOARD_OPT_OUT, merchant_id, member_id)


@dataclass(frozen=True)
class Standing:
    """Where an opted-in member stands in a month: `rank` None with no points earned in it."""

    alias: str
    rank: int | None
    points: int


def parse_month(text: str) -> datetime:
    """`"2026-11"` → the first instant of that month (UTC); `InvalidPeriod` for anything else."""
    found = MONTH_PATTERN.fullmatch(text)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise InvalidPeriod(f"a leaderboard period is a month written YYYY-MM, not {text!r}")
    return datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)


async def leaderboard_enabled(pg: PgConnection, merchant_id: str, now: datetime) -> bool:
    return (await program_in_force(pg, merchant_id, now)).program.leaderboard.enabled


async def member_standing(
    pg: PgConnection, merchant_id: str, member_id: str, month: datetime
) -> Standing | None:
    """The member's alias, rank and points in `month`; None if they have not opted in."""
    alias = await pg.fetchval(SELECT_LEADERBOARD_ALIAS, merchant_id, member_id)
    if alias is None:
        return None
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    row = await pg.fetchrow(
        SELECT_LEADERBOARD_STANDING, merchant_id, start, add_months(start, 1), alias
    )
    if row is None:
        return Standing(alias, None, 0)
    return Standing(alias, row["rank"], row["points"])


async def monthly_leaderboard(
    pg: PgConnection, merchant_id: str, month: datetime, *, limit: int = 10
) -> list[LeaderboardRow]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    rows = await pg.fetch(
        SELECT_LEADERBOARD_RANKING, merchant_id, start, add_months(start, 1), min(limit, MAX_ROWS)
    )
    return [LeaderboardRow(i + 1, r["alias"], r["points"]) for i, r in enumerate(rows)]
