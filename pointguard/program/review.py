"""Reviewing what the fraud guard held: a risk reviewer's decision on a member's case, carried
to the ledger in the same transaction. `clear` lets the held earns go (those already due are
released at once, the rest by the upkeep when due); `confirm` forfeits their pending points to
the `forfeited` account and may freeze the member; `escalate` leaves the points held. The
storefront hears `member.cleared` or `member.frozen`, and of every entry posted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.cases import Case, ReviewAction, decide_case
from pointguard.ledger import PostedEntry
from pointguard.ledger import operations as ops
from pointguard.program.outbox import entry_events, write_events


@dataclass(frozen=True)
class Reviewed:
    case: Case
    entries: list[PostedEntry]  # releases (clear) or forfeits (confirm)


async def review_case(
    pg: PgConnection,
    merchant_id: str,
    case_id: int,
    action: ReviewAction,
    *,
    reviewer: str,
    note: str | None = None,
    freeze: bool = False,
    now: datetime,
) -> Reviewed:
    """Decide the case (`CaseAlreadyDecided` if it was decided before, `UnknownCase` if there
    is none) and carry the decision to the ledger."""
    decided = await decide_case(
        pg, merchant_id, case_id, action, reviewer=reviewer, note=note, freeze=freeze, now=now
    )
    entries: list[PostedEntry] = []
    for entry_id in decided.held_entry_ids:
        if action == ReviewAction.CLEAR:
            posted = await ops.let_go(pg, merchant_id, entry_id, now=now)
        elif action == ReviewAction.CONFIRM:
            posted = await ops.forfeit_pending(
                pg,
                merchant_id,
                entry_id,
                description="Points withheld: a review found this earn abusive",
                source=f"fraud.case:{case_id}",
            )
        else:
            posted = None
        if posted is not None:
            entries.append(posted)
    await write_events(pg, merchant_id, [*decided.events, *entry_events(entries)])
    return Reviewed(decided.case, entries)
