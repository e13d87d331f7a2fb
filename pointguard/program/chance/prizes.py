"""Paying chance prizes, and the rest of what the lottery (`lottery.py`), scratch cards
(`scratch_cards.py`) and surprise bonuses (`surprises.py`) share, in the caller's transaction.

Rules this module enforces:
- Prizes are paid as earns, available at once and expiring as the program's lots do, each
  under its own ledger idempotency key, so paying a prize again pays nothing.
- A budget (a scratch-card campaign's or a surprise's `budget_points`) is a row locked
  `FOR UPDATE` by `lock_budget`, which returns what was paid under that lock; the caller pays
  at most the rest and adds it with `add_to_budget` in the same transaction. The lock
  serialises the payouts of one campaign, which is what a hard cap costs.
- Lock order, to avoid deadlocks with the rest of the program: member accounts before a budget
  row.
- An idempotency key belongs to one member and one chance: used again for another, it is
  refused with `Reason.KEY_REUSED`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from pointguard.db import PgConnection
from pointguard.errors import ChanceUnavailable
from pointguard.ledger import PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.entries import MAX_BATCH_ENTRIES
from pointguard.program.dates import lot_expiry
from pointguard.program.document.schema import LotteryDraw, Program, ScratchCards, SurpriseBonus

SEED_BYTES = 32

ChanceT = TypeVar("ChanceT", LotteryDraw, ScratchCards, SurpriseBonus)

# (member id, points, ledger idempotency key, description)
Prize = tuple[str, int, str, str]

CREATE_BUDGET = """
INSERT INTO program_chance_budgets (merchant_id, kind, campaign_id) VALUES ($1, $2, $3)
ON CONFLICT (merchant_id, kind, campaign_id) DO NOTHING
"""

LOCK_BUDGET = """
SELECT paid_points FROM program_chance_budgets
WHERE merchant_id = $1 AND kind = $2 AND campaign_id = $3
FOR UPDATE
"""

ADD_TO_BUDGET = """
UPDATE program_chance_budgets SET paid_points = paid_points + $4
WHERE merchant_id = $1 AND kind = $2 AND campaign_id = $3
"""


class Reason(StrEnum):
    """Why a chance reward cannot go ahead; the `reason` of `errors.ChanceUnavailable`."""

    UNKNOWN = "unknown"  # no such lottery, campaign or surprise in the program
    NOT_OPEN = "not_open"  # the draw has not been opened (its seed not committed)
    CLOSED = "closed"  # entries have closed, or the draw has run
    NOT_CLOSED = "not_closed"  # the draw cannot run while entries are still open
    KEY_REUSED = "idempotency_key_reused"  # the key already did something else


def find_chance(items: Sequence[ChanceT], chance_id: str, what: str) -> ChanceT:
    """The program's lottery, campaign or surprise `chance_id`, or `Reason.UNKNOWN`."""
    for item in items:
        if item.id == chance_id:
            return item
    raise ChanceUnavailable(
        f"no {what} {chance_id!r} in the program", chance_id=chance_id, reason=Reason.UNKNOWN
    )


async def pay_prizes(
    pg: PgConnection,
    program: Program,
    merchant_id: str,
    source: str,
    now: datetime,
    prizes: Sequence[Prize],
) -> list[PostedEntry]:
    """Post `(member, points, key, description)` prizes as earns, available at once and
    expiring as the program's lots do, in batches the ledger accepts."""
    expires_at = lot_expiry(program, now)
    earns = [
        ops.earn_entry(
            merchant_id,
            member_id,
            points,
            key=key,
            description=description,
            source=source,
            expires_at=expires_at,
        )
        for member_id, points, key, description in prizes
    ]
    posted: list[PostedEntry] = []
    for start in range(0, len(earns), MAX_BATCH_ENTRIES):
        posted += await post_entries(pg, earns[start : start + MAX_BATCH_ENTRIES])
    return posted


async def lock_budget(pg: PgConnection, merchant_id: str, kind: str, campaign_id: str) -> int:
    """Lock the campaign's budget row (creating it at 0) and return the points it has paid."""
    await pg.execute(CREATE_BUDGET, merchant_id, kind, campaign_id)
    return int(await pg.fetchval(LOCK_BUDGET, merchant_id, kind, campaign_id))


async def add_to_budget(
    pg: PgConnection, merchant_id: str, kind: str, campaign_id: str, points: int
) -> None:
    """Count `points` as paid from the campaign's budget (locked by `lock_budget`)."""
    await pg.execute(ADD_TO_BUDGET, merchant_id, kind, campaign_id, points)


def key_reused(chance_id: str, key: str) -> ChanceUnavailable:
    return ChanceUnavailable(
        f"key {key!r} was already used for another member, draw or campaign",
        chance_id=chance_id,
        reason=Reason.KEY_REUSED,
    )
