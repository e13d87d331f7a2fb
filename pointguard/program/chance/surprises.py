"""Surprise bonuses: points for members picked at random by a recorded seed, within a budget,
in the caller's transaction, every point on the ledger.

Rules this module enforces:
- A surprise never pays out more than its `budget_points` over all its runs: each run locks
  the surprise's budget row (`prizes.lock_budget`) and picks only as many members as the
  budget still affords.
- A run is deterministic given its seed, which is recorded: `pick_members` recomputes its
  winners from the seed and the eligible members.
- A run is idempotent per (surprise, run key), and the run key defaults to the UTC day of
  `now`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pointguard.db import PgConnection
from pointguard.errors import InvalidAmount
from pointguard.ledger.keys import idempotency_key
from pointguard.program.chance.prizes import (
    SEED_BYTES,
    add_to_budget,
    find_chance,
    lock_budget,
    pay_prizes,
)
from pointguard.program.document.versions import program_in_force
from pointguard.program.outbox import write_entry_events

MAX_SURPRISE_ELIGIBLE = 1_000_000
BUDGET_KIND = "surprise"

SURPRISE_RUN_COLUMNS = (
    "surprise_id, run_key, seed, eligible_count, points, winners, paid_points, created_at"
)

SELECT_SURPRISE_RUN = f"""
SELECT {SURPRISE_RUN_COLUMNS}
FROM program_surprise_runs WHERE merchant_id = $1 AND surprise_id = $2 AND run_key = $3
"""

INSERT_SURPRISE_RUN = f"""
INSERT INTO program_surprise_runs (merchant_id, {SURPRISE_RUN_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {SURPRISE_RUN_COLUMNS}
"""


class NewSurpriseRun(NamedTuple):
    """`INSERT_SURPRISE_RUN`'s parameters, in `$n` order."""

    merchant_id: str
    surprise_id: str
    run_key: str
    seed: bytes
    eligible_count: int
    points: int
    winners: list[str]
    paid_points: int
    created_at: datetime


@dataclass(frozen=True)
class SurpriseRun:
    surprise_id: str
    run_key: str
    seed: str  # hex: with the eligible list, `pick_members` recomputes `winners`
    eligible_count: int
    points: int  # paid to each winner
    winners: tuple[str, ...]
    paid_points: int
    created_at: datetime


def pick_members(seed: bytes, eligible: Iterable[str], count: int) -> list[str]:
    """`count` distinct members of `eligible`: those with the smallest SHA-256 of the seed's
    bytes followed by the member id in UTF-8, smallest first. The order and repeats of
    `eligible` do not matter."""
    ranked = sorted(set(eligible), key=lambda m: hashlib.sha256(seed + m.encode()).digest())
    return ranked[: max(0, count)]


async def run_surprise(
    pg: PgConnection,
    merchant_id: str,
    surprise_id: str,
    eligible_members: Sequence[str],
    *,
    now: datetime,
    seed: bytes | None = None,
    key: str | None = None,
) -> SurpriseRun:
    """Pay the surprise's `points` to up to `members` members picked at random from
    `eligible_members`, as many as its remaining budget affords. The run is keyed by `key`
    (default: the UTC date of `now`); running a key again returns the first run."""
    if len(eligible_members) > MAX_SURPRISE_ELIGIBLE:
        raise InvalidAmount(
            f"at most {MAX_SURPRISE_ELIGIBLE} eligible members, got {len(eligible_members)}"
        )
    run_key = key if key is not None else now.astimezone(UTC).date().isoformat()
    earlier = await pg.fetchrow(SELECT_SURPRISE_RUN, merchant_id, surprise_id, run_key)
    if earlier is not None:
        return _surprise(earlier)
    program = (await program_in_force(pg, merchant_id, now)).program
    surprise = find_chance(program.chance.surprises, surprise_id, "surprise bonus")
    paid_so_far = await lock_budget(pg, merchant_id, BUDGET_KIND, surprise.id)
    earlier = await pg.fetchrow(SELECT_SURPRISE_RUN, merchant_id, surprise_id, run_key)
    if earlier is not None:  # a racing run of this key committed while we waited
        return _surprise(earlier)

    run_seed = seed if seed is not None else secrets.token_bytes(SEED_BYTES)
    affordable = (surprise.budget_points - paid_so_far) // surprise.points
    winners = pick_members(run_seed, eligible_members, min(surprise.members, affordable))
    prizes = [
        (
            member_id,
            surprise.points,
            idempotency_key("surprise", surprise.id, run_key, member_id),
            f"{surprise.points} points: {surprise.name}",
        )
        for member_id in winners
    ]
    source = f"program.surprise:{surprise.id}"
    posted = await pay_prizes(pg, program, merchant_id, source, now, prizes)
    paid_points = surprise.points * len(winners)
    if paid_points:
        await add_to_budget(pg, merchant_id, BUDGET_KIND, surprise.id, paid_points)
    run = NewSurpriseRun(
        merchant_id=merchant_id,
        surprise_id=surprise.id,
        run_key=run_key,
        seed=run_seed,
        eligible_count=len(set(eligible_members)),
        points=surprise.points,
        winners=winners,
        paid_points=paid_points,
        created_at=now,
    )
    row = await pg.fetchrow(INSERT_SURPRISE_RUN, *run)
    await write_entry_events(pg, merchant_id, posted)
    return _surprise(row)


def _surprise(row: Any) -> SurpriseRun:
    return SurpriseRun(
        surprise_id=row["surprise_id"],
        run_key=row["run_key"],
        seed=bytes(row["seed"]).hex(),
        eligible_count=row["eligible_count"],
        points=row["points"],
        winners=tuple(row["winners"]),
        paid_points=row["paid_points"],
        created_at=row["created_at"],
    )
