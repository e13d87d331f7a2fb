"""Reviewing what the fraud guard held: a risk reviewer's decision on a member's case, carried
to the ledger in the same transaction. `clear` lets the held earns go (those already due are
released at once, the rest by the upkeep when due); `confirm` forfeits their pending points to
the `forfeited` account, and what the member's cleared earns still have pending (an abuser's
unreleased points are the abuse's too; what was released stays), may freeze the member, and
may void what the member's referrals earned them (each rewarded referral is reversed and its
referrer reward taken back, as far as the member has not spent it); `escalate` leaves the
points held. The storefront hears `member.cleared` or `member.frozen`, and of every entry
posted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.cases import Case, ReviewAction, cleared_entry_ids, decide_case
from pointguard.ledger import PostedEntry
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.outbox import entry_events, write_events
from pointguard.program.referrals.records import reverse_referrals_of
from pointguard.program.referrals.rules import referrer_key


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
    void_referrals: bool = False,
    now: datetime,
) -> Reviewed:
    """Decide the case (`CaseAlreadyDecided` if it was decided before, `UnknownCase` if there
    is none) and carry the decision to the ledger."""
    decided = await decide_case(
        pg, merchant_id, case_id, action, reviewer=reviewer, note=note, freeze=freeze, now=now
    )
    entries: list[PostedEntry] = []
    to_decide = decided.held_entry_ids
    if action == ReviewAction.CONFIRM:
        member_id = decided.case.member_id
        to_decide = sorted({*to_decide, *await cleared_entry_ids(pg, merchant_id, member_id)})
    for entry_id in to_decide:
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
    if action == ReviewAction.CONFIRM and void_referrals:
        entries += await _void_referral_rewards(pg, merchant_id, decided.case.member_id, case_id)
    await write_events(pg, merchant_id, [*decided.events, *entry_events(entries)])
    return Reviewed(decided.case, entries)


async def _void_referral_rewards(
    pg: PgConnection, merchant_id: str, referrer_id: str, case_id: int
) -> list[PostedEntry]:
    """Reverse the referrer's rewarded referrals and take back what each reward still holds."""
    referees = await reverse_referrals_of(pg, merchant_id, referrer_id)
    keys = [referrer_key(referee) for referee in referees]
    earned = await load_entries_by_key(pg, merchant_id, keys)
    voided: list[PostedEntry] = []
    for key in keys:
        if key in earned:
            voided += await ops.take_back_what_is_left(
                pg,
                merchant_id,
                earned[key].entry_id,
                key=idempotency_key("referral-voided", key),
                description="Referral points withdrawn: a review found the referral abusive",
                source=f"fraud.case:{case_id}",
            )
    return voided
