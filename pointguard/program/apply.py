"""Program use cases: apply events, inside the caller's transaction.

The one place where the program meets the database: it marks each event applied (a second
application does nothing), locks the members' program rows (events of one member apply one at
a time), loads what the rules need, calls the pure rules, posts the intents to the ledger,
records the orders and actions, and writes outbox events for the storefront, all in the
caller's transaction, so that all of it happens exactly once or not at all. Workers hand over
whole batches (`apply_events`), which go set-wise: a statement per step, not per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from pointguard.db import PgConnection
from pointguard.ledger import PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.actions.rules import ActionCounts
from pointguard.program.chance.scratch_cards import (
    ScratchCard,
    campaigns_granted_on,
    grant_scratch_card,
)
from pointguard.program.document.versions import ProgramVersion, programs_in_force
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from pointguard.program.orders.records import PaidOrder, load_order, record_orders, record_refund
from pointguard.program.outbox import write_entry_events
from pointguard.program.referrals.records import referral_intents, reversal_intents
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    MemberState,
    TakeBackIntent,
    add_months,
    evaluate,
)
from pointguard.program.tiers.review import complete_challenges, refresh_tier, revoke_challenges
from pointguard.program.tiers.rules import TierStatus

EVENT_TYPES: dict[type[Event], str] = {
    OrderPaid: "order.paid",
    OrderRefunded: "order.refunded",
    OrderCancelled: "order.cancelled",
    ActionPerformed: "action.performed",
}

MARK_APPLIED = """
INSERT INTO program_applied_events (merchant_id, event_id, event_type, member_id, occurred_at)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (merchant_id, event_id) DO NOTHING
RETURNING event_id
"""

# Rows are locked in the order of $2 (callers sort it): one global order for every worker. The
# update that locks a row also keeps the time of the member's newest event (for inactivity).
LOCK_MEMBERS = """
INSERT INTO program_members AS m (merchant_id, member_id, last_activity_at)
SELECT $1, * FROM unnest($2::text[], $3::timestamptz[])
ON CONFLICT (merchant_id, member_id) DO UPDATE
SET last_activity_at = greatest(m.last_activity_at, excluded.last_activity_at)
RETURNING member_id, tier, tier_review_at, birthday, categories_bought,
          promotion_points::text AS promotion_points
"""

SET_BIRTHDAY = "UPDATE program_members SET birthday = $3 WHERE merchant_id = $1 AND member_id = $2"

# What the member was already granted of the action in each cap's window around the event's
# own time: [$4, $5) its UTC day, [$6, $7) month, [$8, $9) year, and ever. Every grant counts,
# also one dated later that arrived first, or one dated earlier that arrived later: counted
# under the member's lock (`LOCK_MEMBERS`), a cap holds whatever the order of arrival.
ACTION_COUNTS = """
SELECT count(*) FILTER (WHERE occurred_at >= $4 AND occurred_at < $5) AS today,
       count(*) FILTER (WHERE occurred_at >= $6 AND occurred_at < $7) AS this_month,
       count(*) FILTER (WHERE occurred_at >= $8 AND occurred_at < $9) AS this_year,
       count(*) AS lifetime
FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = $3
"""

INSERT_ACTION = """
INSERT INTO program_actions (merchant_id, event_id, member_id, action, occurred_at, points)
VALUES ($1, $2, $3, $4, $5, $6)
"""


@dataclass(frozen=True)
class Applied:
    event_id: str
    program_version: int | None
    entries: list[PostedEntry] = field(default_factory=list)
    already_applied: bool = False
    scratch_cards: list[ScratchCard] = field(default_factory=list)


@dataclass
class _Work:
    """One event of a round on its way through: what it earns so far, and its member's row."""

    index: int
    event: Event
    version: ProgramVersion
    member: Any
    intents: list[Intent] = field(default_factory=list)
    recorded: bool = True  # False: a paid order recorded before, under another webhook id


async def apply_event(pg: PgConnection, merchant_id: str, event: Event) -> Applied:
    """Apply `event` to its member under the program in force at the event's time."""
    return (await apply_events(pg, merchant_id, [event]))[0]


async def apply_events(
    pg: PgConnection, merchant_id: str, events: Sequence[Event]
) -> list[Applied]:
    """Apply `events`, each exactly once, each member's in the order given, and return what
    each did, in that order.

    Set-wise, because one statement per step for a hundred events costs about what one event
    costs alone (round trips, not PostgreSQL's work, are the price): the events go in rounds,
    the k-th event of every member in round k, so that no member appears twice in a round.
    A round marks its events applied, finds their program versions and locks their members in
    one statement each (members sorted, so that concurrent callers lock in one global order),
    records its paid orders together, then posts every earn of the round in one batch and
    writes its outbox events in one statement. Refunds and actions are rarer and go one by one
    inside the round.
    """
    applied: dict[int, Applied] = {}
    for round_ in _rounds(events):
        fresh = await _mark_applied(pg, merchant_id, [event for _, event in round_])
        todo = []
        for (index, event), is_fresh in zip(round_, fresh, strict=True):
            if is_fresh:
                todo.append((index, event))
            else:
                applied[index] = Applied(event.event_id, None, already_applied=True)
        if not todo:
            continue
        versions = await programs_in_force(pg, merchant_id, [e.occurred_at for _, e in todo])
        members = await _lock_members(pg, merchant_id, [e for _, e in todo])
        work = [
            _Work(index, event, version, members[event.member_id])
            for (index, event), version in zip(todo, versions, strict=True)
        ]
        paid = [(w, e) for w in work if isinstance(e := w.event, OrderPaid)]
        recorded = await record_orders(
            pg, merchant_id, [PaidOrder(e, w.version.program, w.member) for w, e in paid]
        )
        for (item, _), intents in zip(paid, recorded, strict=True):
            item.recorded = intents is not None
            item.intents = intents or []
        for item in work:
            if not isinstance(item.event, OrderPaid):
                item.intents = await _other_intents(pg, merchant_id, item)
        applied.update(await _finish(pg, merchant_id, work))
    return [applied[index] for index in range(len(events))]


def _rounds(events: Sequence[Event]) -> list[list[tuple[int, Event]]]:
    """Round k holds the k-th event of each member, sorted by member."""
    rounds: list[list[tuple[int, Event]]] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(events):
        k = seen.get(event.member_id, 0)
        seen[event.member_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append((index, event))
    for round_ in rounds:
        round_.sort(key=lambda pair: pair[1].member_id)
    return rounds


async def _mark_applied(pg: PgConnection, merchant_id: str, events: Sequence[Event]) -> list[bool]:
    """Mark the round's events applied; for each, whether it was not applied before."""
    marked = {
        row["event_id"]
        for row in await pg.fetch(
            MARK_APPLIED,
            merchant_id,
            [e.event_id for e in events],
            [EVENT_TYPES[type(e)] for e in events],
            [e.member_id for e in events],
            [e.occurred_at for e in events],
        )
    }
    fresh = []
    for event in events:
        fresh.append(event.event_id in marked)
        marked.discard(event.event_id)  # the same event twice in a round applies once
    return fresh


async def _lock_members(
    pg: PgConnection, merchant_id: str, events: Sequence[Event]
) -> dict[str, Any]:
    """Lock the members of a round's events (one each), noting each event's time as the
    member's latest activity (the statement keeps the later of the two)."""
    ordered = sorted(events, key=lambda event: event.member_id)
    rows = await pg.fetch(
        LOCK_MEMBERS,
        merchant_id,
        [event.member_id for event in ordered],
        [event.occurred_at for event in ordered],
    )
    return {row["member_id"]: row for row in rows}


async def _other_intents(pg: PgConnection, merchant_id: str, item: _Work) -> list[Intent]:
    """What a refund, a cancellation or an action earns or takes back."""
    event, program, member = item.event, item.version.program, item.member
    if isinstance(event, OrderRefunded | OrderCancelled):
        order = await load_order(pg, merchant_id, event)
        intents = evaluate(event, MemberState(event.member_id, order=order), program)
        updated = await record_refund(pg, merchant_id, event, order)
        intents += await reversal_intents(pg, merchant_id, program, event.member_id, updated)
        return intents + await revoke_challenges(
            pg, merchant_id, event.member_id, program, event.occurred_at
        )
    if isinstance(event, ActionPerformed):
        if event.birthday is not None:
            await pg.execute(SET_BIRTHDAY, merchant_id, event.member_id, event.birthday)
        counts = await _action_counts(pg, merchant_id, event)
        intents = evaluate(
            event,
            MemberState(event.member_id, birthday=member["birthday"], action_counts=counts),
            program,
        )
        for intent in intents:
            await pg.execute(
                INSERT_ACTION,
                merchant_id,
                event.event_id,
                event.member_id,
                event.action,
                event.occurred_at,
                intent.points,
            )
        return intents + await referral_intents(pg, merchant_id, program, event)
    raise TypeError(f"no service for {type(event).__name__}")


async def _finish(pg: PgConnection, merchant_id: str, work: Sequence[_Work]) -> dict[int, Applied]:
    """Challenges, then every earn and take-back of the round posted together, the outbox
    events, the members' tiers and scratch cards."""
    for item in work:
        if not item.recorded:
            continue
        event, program = item.event, item.version.program
        kind = _activity_kind(event, item.intents)
        if kind is not None:
            item.intents += await complete_challenges(
                pg, merchant_id, event.member_id, program, kind, event.occurred_at
            )
        referrers = {i.member_id for i in item.intents if isinstance(i, EarnIntent) and i.member_id}
        for referrer in referrers - {event.member_id}:  # a referral was rewarded: the
            item.intents += await complete_challenges(  # referrer's challenges
                pg, merchant_id, referrer, program, "referral", event.occurred_at
            )
    posted = await _post(pg, merchant_id, [(w.event.member_id, w.intents) for w in work])
    await write_entry_events(pg, merchant_id, [e for entries in posted for e in entries])
    applied: dict[int, Applied] = {}
    for item, entries in zip(work, posted, strict=True):
        event, program = item.event, item.version.program
        if not item.recorded:
            applied[item.index] = Applied(event.event_id, item.version.version)
            continue
        current = TierStatus(item.member["tier"], item.member["tier_review_at"])
        await refresh_tier(pg, merchant_id, event.member_id, program, current, event.occurred_at)
        cards = [
            await grant_scratch_card(
                pg,
                merchant_id,
                event.member_id,
                campaign.id,
                key=idempotency_key("scratch-card", event.event_id, campaign.id),
                now=event.occurred_at,
            )
            for campaign in campaigns_granted_on(program, EVENT_TYPES[type(event)])
        ]
        applied[item.index] = Applied(
            event.event_id, item.version.version, entries, scratch_cards=cards
        )
    return applied


def _activity_kind(event: Event, intents: list[Intent]) -> str | None:
    """What the event counts as for challenges: a paid order, a rewarded review, or nothing."""
    if isinstance(event, OrderPaid):
        return "order"
    if isinstance(event, ActionPerformed) and event.action == "review.published" and intents:
        return "review"
    return None


async def _post(
    pg: PgConnection, merchant_id: str, work: Sequence[tuple[str, list[Intent]]]
) -> list[list[PostedEntry]]:
    """Post each (member, intents) pair's earns, all in one batch, then its take-backs; return
    the entries of each pair, in order."""
    earns = [
        [
            ops.earn_entry(
                merchant_id,
                i.member_id or member_id,
                i.points,
                key=i.key,
                description=i.description,
                source=i.source,
                release_at=i.release_at,
                expires_at=i.expires_at,
            )
            for i in intents
            if isinstance(i, EarnIntent)
        ]
        for member_id, intents in work
    ]
    flat = [entry for entries in earns for entry in entries]
    posted_earns = iter(await post_entries(pg, flat) if flat else [])
    posted: list[list[PostedEntry]] = []
    for (_, intents), entries in zip(work, earns, strict=True):
        mine = [next(posted_earns) for _ in entries]
        for intent in intents:
            if isinstance(intent, TakeBackIntent):
                mine += await _take_back(pg, merchant_id, intent)
        posted.append(mine)
    return posted


async def _take_back(
    pg: PgConnection, merchant_id: str, intent: TakeBackIntent
) -> list[PostedEntry]:
    earned = (await load_entries_by_key(pg, merchant_id, [intent.earn_key])).get(intent.earn_key)
    if earned is None:
        return []
    return await ops.take_back(
        pg,
        merchant_id,
        earned.entry_id,
        intent.points,
        key=intent.key,
        description=intent.description,
        source=intent.source,
    )


async def _action_counts(
    pg: PgConnection, merchant_id: str, event: ActionPerformed
) -> ActionCounts:
    day = event.occurred_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    year = month.replace(month=1)
    row = await pg.fetchrow(
        ACTION_COUNTS,
        merchant_id,
        event.member_id,
        event.action,
        day,
        day + timedelta(days=1),
        month,
        add_months(month, 1),
        year,
        year.replace(year=year.year + 1),
    )
    return ActionCounts(row["today"], row["this_month"], row["this_year"], row["lifetime"])
