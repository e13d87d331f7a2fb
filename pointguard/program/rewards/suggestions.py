"""Personalised reward suggestions: the rewards a member can afford or nearly afford, ranked by
how well they fit what the member buys. Pure, plus one loader.

A reward is nearly affordable when the member is short by at most a fifth of its cost. Ranking:
first by how many of the reward's `categories` the member has bought in, then those they can
afford before those they nearly can, then the smallest shortfall, then catalogue order. Rewards
of tiers the member does not hold are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.ledger import member_balances
from pointguard.program.document.schema import Program
from pointguard.program.document.versions import program_in_force
from pointguard.program.rewards.catalogue import admits_tier

NEARLY_SHORT_DIVISOR = 5  # short by at most cost / 5

SELECT_MEMBER_TASTES = """
SELECT tier, categories_bought FROM program_members WHERE merchant_id = $1 AND member_id = $2
"""


@dataclass(frozen=True)
class Suggestion:
    reward_id: str
    name: str
    cost_points: int
    points_short: int  # 0: affordable now
    matching_categories: int


def suggest_rewards(
    program: Program, *, available_points: int, tier: str | None, categories: frozenset[str]
) -> list[Suggestion]:
    picked = []
    for position, reward in enumerate(program.rewards):
        if not admits_tier(reward, tier):
            continue
        short = max(0, reward.cost_points - available_points)
        if short * NEARLY_SHORT_DIVISOR > reward.cost_points:
            continue
        fit = len(set(reward.categories) & categories)
        picked.append(
            (
                (-fit, short > 0, short, position),
                Suggestion(reward.id, reward.name, reward.cost_points, short, fit),
            )
        )
    return [suggestion for _, suggestion in sorted(picked, key=lambda pair: pair[0])]


async def member_suggestions(
    pg: PgConnection, merchant_id: str, member_id: str, now: datetime
) -> list[Suggestion]:
    program = (await program_in_force(pg, merchant_id, now)).program
    member = await pg.fetchrow(SELECT_MEMBER_TASTES, merchant_id, member_id)
    balances = await member_balances(pg, merchant_id, member_id)
    return suggest_rewards(
        program,
        available_points=balances.available_points,
        tier=member["tier"] if member else None,
        categories=frozenset(member["categories_bought"]) if member else frozenset(),
    )
