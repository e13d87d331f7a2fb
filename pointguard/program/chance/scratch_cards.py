"""Scratch cards: a card granted for an event, its prize drawn at random and paid within the
campaign's budget, in the caller's transaction, every point on the ledger.

Rules this module enforces:
- A campaign grants a card for each event of its `granted_on` type (`campaigns_granted_on`;
  `apply.py` calls `draw_scratch_card`), once per idempotency key.
- Prizes are drawn with `secrets` (a CSPRNG), weighted by the prize table (`pick_prize`).
- A campaign never pays out more than its `budget_points` over all its cards: each grant locks
  the campaign's budget row (`prizes.lock_budget`), and a card whose prize would pass the
  budget pays 0 (no win).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.ledger import PostedEntry
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.program.chance.prizes import (
    add_to_budget,
    find_chance,
    key_reused,
    lock_budget,
    pay_prizes,
)
from pointguard.program.document.schema import Program, ScratchCardPrize, ScratchCards
from pointguard.program.document.versions import program_in_force
from pointguard.program.intents import OutboxEvent
from pointguard.program.keyed_rows import from_row, row_by_key
from pointguard.program.outbox import entry_events, write_events

BUDGET_KIND = "scratch"

SELECT_CARD = """
SELECT card_id, idempotency_key, campaign_id, member_id, prize_points, paid_points,
       ledger_entry_id, created_at
FROM program_scratch_cards
"""
SELECT_CARD_BY_KEY = SELECT_CARD + "WHERE merchant_id = $1 AND idempotency_key = $2"

INSERT_CARD = """
INSERT INTO program_scratch_cards (merchant_id, idempotency_key, campaign_id, member_id,
    prize_points, paid_points, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
RETURNING card_id
"""


class NewCard(NamedTuple):
    """`INSERT_CARD`'s parameters, in `$n` order."""

    merchant_id: str
    idempotency_key: str
    campaign_id: str
    member_id: str
    prize_points: int
    paid_points: int
    created_at: datetime


SET_CARD_ENTRY = """
UPDATE program_scratch_cards SET ledger_entry_id = $3 WHERE merchant_id = $1 AND card_id = $2
"""


@dataclass(frozen=True)
class ScratchCard:
    """A card granted to a member: `prize_points` is what it drew, `paid_points` what it paid
    (0 when the prize was a no-win or the campaign's budget could not cover it)."""

    card_id: int
    campaign_id: str
    member_id: str
    prize_points: int
    paid_points: int
    ledger_entry_id: int | None
    created_at: datetime


def pick_prize(prizes: Sequence[ScratchCardPrize], roll: int) -> int:
    """The prize points at `roll` (0 <= roll < total weight) on the cumulative weights: each
    prize wins with probability weight / total weight."""
    for prize in prizes:
        if roll < prize.weight:
            return prize.points
        roll -= prize.weight
    raise ValueError("roll is not below the prizes' total weight")


def campaigns_granted_on(program: Program, event_type: str) -> list[ScratchCards]:
    """The scratch-card campaigns that grant a card for an event of this type."""
    return [c for c in program.chance.scratch_cards if c.granted_on == event_type]


async def grant_scratch_card(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    campaign_id: str,
    *,
    key: str,
    now: datetime,
) -> ScratchCard:
    """Grant a member one card of the campaign, and tell the storefront (`draw_scratch_card`)."""
    card, events = await draw_scratch_card(
        pg, merchant_id, member_id, campaign_id, key=key, now=now
    )
    await write_events(pg, merchant_id, events)
    return card


async def draw_scratch_card(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    campaign_id: str,
    *,
    key: str,
    now: datetime,
) -> tuple[ScratchCard, list[OutboxEvent]]:
    """Grant a member one card of the campaign (`apply.py` does for its `granted_on` event):
    draw its prize and pay it now if the budget still covers it; return the card and the events
    the caller writes for the storefront. A repeated `key` returns the first card, and no
    events."""
    earlier = await _card_by_key(pg, merchant_id, member_id, campaign_id, key)
    if earlier is not None:
        return earlier, []
    program = (await program_in_force(pg, merchant_id, now)).program
    campaign = find_chance(program.chance.scratch_cards, campaign_id, "scratch-card campaign")
    await ops.lock_members(pg, merchant_id, [member_id])
    paid_so_far = await lock_budget(pg, merchant_id, BUDGET_KIND, campaign.id)
    # A racing repeat of this key may have committed while we waited for the budget.
    earlier = await _card_by_key(pg, merchant_id, member_id, campaign_id, key)
    if earlier is not None:
        return earlier, []

    total_weight = sum(p.weight for p in campaign.prizes)
    prize_points = pick_prize(campaign.prizes, secrets.randbelow(total_weight))
    fits = paid_so_far + prize_points <= campaign.budget_points
    paid_points = prize_points if fits else 0
    new_card = NewCard(
        merchant_id=merchant_id,
        idempotency_key=key,
        campaign_id=campaign.id,
        member_id=member_id,
        prize_points=prize_points,
        paid_points=paid_points,
        created_at=now,
    )
    card_id = await pg.fetchval(INSERT_CARD, *new_card)
    if card_id is None:  # the key granted a card of another campaign, racing us
        raise key_reused(campaign_id, key)
    posted: list[PostedEntry] = []
    if paid_points:
        prize = (
            member_id,
            paid_points,
            idempotency_key("scratch", campaign.id, key),
            f"{paid_points} points won on a {campaign.name} card",
        )
        posted = await pay_prizes(
            pg, program, merchant_id, f"program.scratch:{campaign.id}", now, [prize]
        )
        await pg.execute(SET_CARD_ENTRY, merchant_id, card_id, posted[0].entry_id)
        await add_to_budget(pg, merchant_id, BUDGET_KIND, campaign.id, paid_points)
    card = ScratchCard(
        card_id=card_id,
        campaign_id=campaign.id,
        member_id=member_id,
        prize_points=prize_points,
        paid_points=paid_points,
        ledger_entry_id=posted[0].entry_id if posted else None,
        created_at=now,
    )
    granted = OutboxEvent("scratch_card.granted", {**asdict(card), "at": now})
    return card, [granted, *entry_events(posted)]


async def _card_by_key(
    pg: PgConnection, merchant_id: str, member_id: str, campaign_id: str, key: str
) -> ScratchCard | None:
    row = await row_by_key(
        pg, SELECT_CARD_BY_KEY, merchant_id, key, member_id, "campaign_id", campaign_id, key_reused
    )
    return None if row is None else from_row(ScratchCard, row)
