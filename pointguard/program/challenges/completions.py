"""The program's record of challenge completions (`program_challenge_completions`), and the
member activity that challenges count (orders kept, rewarded reviews, successful referrals),
loaded for the rules in `challenges/rules.py` and stored as they decide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pointguard.db import PgConnection
from pointguard.program.challenges.rules import (
    Activity,
    ChallengeDecision,
    ChallengeProgress,
    Completion,
    challenge_progress,
    lookback_days,
    progress_lapses_at,
)
from pointguard.program.document.schema import Challenge
from pointguard.program.document.versions import program_in_force
from pointguard.program.orders.records import load_kept_orders

SELECT_CHALLENGE_COMPLETIONS = """
SELECT challenge_id, completed_at, generation, revoked_at IS NOT NULL AS revoked
FROM program_challenge_completions
WHERE merchant_id = $1 AND member_id = $2
ORDER BY completed_at, challenge_id
"""

# A completion after a revocation is the next generation: its bonus gets a key of its own.
UPSERT_CHALLENGE_COMPLETION = """
INSERT INTO program_challenge_completions AS c
    (merchant_id, member_id, challenge_id, badge, completed_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, member_id, challenge_id) DO UPDATE
SET badge = excluded.badge, completed_at = excluded.completed_at,
    generation = c.generation + 1, revoked_at = NULL
WHERE c.revoked_at IS NOT NULL
"""

REVOKE_CHALLENGE_COMPLETION = """
UPDATE program_challenge_completions SET revoked_at = $4
WHERE merchant_id = $1 AND member_id = $2 AND challenge_id = $3 AND revoked_at IS NULL
"""

SELECT_BADGES = """
SELECT badge, challenge_id, completed_at FROM program_challenge_completions
WHERE merchant_id = $1 AND member_id = $2 AND revoked_at IS NULL
ORDER BY completed_at, challenge_id
"""

SELECT_REVIEWS_IN_WINDOW = """
SELECT occurred_at FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = 'review.published'
  AND occurred_at > $3 AND occurred_at <= $4
"""

SELECT_REFERRALS_REWARDED_IN_WINDOW = """
SELECT rewarded_at FROM program_referrals
WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded'
  AND rewarded_at > $3 AND rewarded_at <= $4
"""


async def load_completions(
    pg: PgConnection, merchant_id: str, member_id: str
) -> dict[str, Completion]:
    """The member's completions by challenge, revoked ones included."""
    return {
        row["challenge_id"]: Completion(
            row["challenge_id"], row["completed_at"], row["generation"], row["revoked"]
        )
        for row in await pg.fetch(SELECT_CHALLENGE_COMPLETIONS, merchant_id, member_id)
    }


async def load_activity(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[Activity]:
    """What challenges count for the member in (start, end]: orders, reviews, referrals."""
    orders = await load_kept_orders(pg, merchant_id, member_id, start, end)
    reviews = await pg.fetch(SELECT_REVIEWS_IN_WINDOW, merchant_id, member_id, start, end)
    referrals = await pg.fetch(
        SELECT_REFERRALS_REWARDED_IN_WINDOW, merchant_id, member_id, start, end
    )
    return (
        [Activity(o.paid_at, "order", o.spend_minor) for o in orders if not o.returned]
        + [Activity(r["occurred_at"], "review") for r in reviews]
        + [Activity(r["rewarded_at"], "referral") for r in referrals]
    )


async def store_challenges(
    pg: PgConnection, merchant_id: str, member_id: str, decision: ChallengeDecision, at: datetime
) -> None:
    """Record the completions and revocations a decision made at `at`."""
    for challenge, _ in decision.completed:
        await pg.execute(
            UPSERT_CHALLENGE_COMPLETION, merchant_id, member_id, challenge.id, challenge.badge, at
        )
    for challenge in decision.revoked:
        await pg.execute(REVOKE_CHALLENGE_COMPLETION, merchant_id, member_id, challenge.id, at)


@dataclass(frozen=True)
class ChallengeStanding:
    """A challenge of the program in force, as the member stands in it."""

    challenge: Challenge
    progress: ChallengeProgress
    completed_at: datetime | None  # None: not completed (or its completion was revoked)
    lapses_at: datetime | None  # `rules.progress_lapses_at`


@dataclass(frozen=True)
class Badge:
    name: str
    challenge_id: str
    earned_at: datetime


async def member_challenges(
    pg: PgConnection, merchant_id: str, member_id: str, at: datetime
) -> list[ChallengeStanding]:
    """Each challenge of the program in force, with the member's progress and completion."""
    program = (await program_in_force(pg, merchant_id, at)).program
    if not program.challenges:
        return []
    done = {
        c.challenge_id: c.completed_at
        for c in (await load_completions(pg, merchant_id, member_id)).values()
        if not c.revoked
    }
    activity = await load_activity(
        pg, merchant_id, member_id, at - timedelta(days=lookback_days(program.challenges)), at
    )
    return [
        ChallengeStanding(
            challenge=c,
            progress=challenge_progress(c, activity, at),
            completed_at=done.get(c.id),
            lapses_at=None if c.id in done else progress_lapses_at(c, activity, at),
        )
        for c in program.challenges
    ]


async def member_badges(pg: PgConnection, merchant_id: str, member_id: str) -> list[Badge]:
    """The badges of the member's completed challenges (not revoked), oldest first, also of
    challenges the program no longer has."""
    return [
        Badge(row["badge"], row["challenge_id"], row["completed_at"])
        for row in await pg.fetch(SELECT_BADGES, merchant_id, member_id)
    ]
