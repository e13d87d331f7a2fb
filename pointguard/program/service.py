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
from datetime import UTC
from typing import Any

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import UnknownOrder
from pointguard.ledger import PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.actions import ActionCounts
from pointguard.program.earning import (
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    qualifying_spend,
)
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from pointguard.program.outbox import write_entry_events
from pointguard.program.referrals import referral_intents, reversal_intents
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    MemberState,
    OrderRecord,
    TakeBackIntent,
    after_refund,
    evaluate,
    order_earn_key,
    order_intents,
)
from pointguard.program.scratch_cards import ScratchCard, campaigns_granted_on, grant_scratch_card
from pointguard.program.standing import complete_challenges, refresh_tier, revoke_challenges
from pointguard.program.store import ProgramVersion, programs_in_force
from pointguard.program.tiers import TierStatus

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

# Rows are locked in the order of $2 (callers sort it): one global order for every worker.
LOCK_MEMBERS = """
INSERT INTO program_members AS m (merchant_id, member_id) SELECT $1, unnest($2::text[])
ON CONFLICT (merchant_id, member_id) DO UPDATE SET member_id = m.member_id
RETURNING member_id, tier, tier_review_at, birthday, categories_bought,
          promotion_points::text AS promotion_points
"""

UPDATE_BUYERS = """
UPDATE program_members AS m
SET categories_bought = ARRAY(SELECT jsonb_array_elements_text(u.categories::jsonb)),
    promotion_points = u.promotion_points::jsonb
FROM unnest($2::text[], $3::text[], $4::text[]) AS u(member_id, categories, promotion_points)
WHERE m.merchant_id = $1 AND m.member_id = u.member_id
"""

SET_BIRTHDAY = "UPDATE program_members SET birthday = $3 WHERE merchant_id = $1 AND member_id = $2"

LOAD_ORDER = """
SELECT member_id, lines::text AS lines, bonus_keys::text AS bonus_keys,
       refunded::text AS refunded, cancelled, bonuses_returned
FROM program_orders WHERE merchant_id = $1 AND order_id = $2 FOR UPDATE
"""

INSERT_ORDERS = """
INSERT INTO program_orders
    (merchant_id, order_id, member_id, paid_at, lines, qualifying, bonus_keys)
SELECT $1, o.order_id, o.member_id, o.paid_at, o.lines::jsonb, o.qualifying::jsonb,
       o.bonus_keys::jsonb
FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])
     AS o(order_id, member_id, paid_at, lines, qualifying, bonus_keys)
ON CONFLICT (merchant_id, order_id) DO NOTHING
RETURNING order_id
"""

UPDATE_ORDER = """
UPDATE program_orders SET refunded = $3::jsonb, cancelled = $4, bonuses_returned = $5
WHERE merchant_id = $1 AND order_id = $2
"""

ACTION_COUNTS = """
SELECT count(*) FILTER (WHERE occurred_at >= $4) AS today,
       count(*) FILTER (WHERE occurred_at >= $5) AS this_month,
       count(*) FILTER (WHERE occurred_at >= $6) AS this_year,
       count(*) AS lifetime
FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = $3 AND occurred_at < $7
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
        todo = [pair for pair, is_fresh in zip(round_, fresh, strict=True) if is_fresh]
        for (index, event), is_fresh in zip(round_, fresh, strict=True):
            if not is_fresh:
                applied[index] = Applied(event.event_id, None, already_applied=True)
        if not todo:
            continue
        versions = await programs_in_force(pg, merchant_id, [e.occurred_at for _, e in todo])
        members = await _lock_members(pg, merchant_id, [e.member_id for _, e in todo])
        work = [
            _Work(index, event, version, members[event.member_id])
            for (index, event), version in zip(todo, versions, strict=True)
        ]
        await _record_orders(pg, merchant_id, [w for w in work if isinstance(w.event, OrderPaid)])
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
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, Any]:
    rows = await pg.fetch(LOCK_MEMBERS, merchant_id, sorted(set(member_ids)))
    return {row["member_id"]: row for row in rows}


def _buyer(member: Any) -> Buyer:
    return Buyer(
        tier=member["tier"],
        categories_bought=frozenset(member["categories_bought"]),
        promotion_points=msgspec.json.decode(member["promotion_points"]),
    )


@dataclass(frozen=True)
class _PricedOrder:
    item: _Work
    event: OrderPaid
    buyer: Buyer
    points: OrderPoints
    qualifying: dict[str, int]  # eligible spend per category, for tiers and referrals


def _price(item: _Work) -> _PricedOrder:
    event, program = item.event, item.version.program
    assert isinstance(event, OrderPaid)
    buyer = _buyer(item.member)
    points = order_points(program, event, buyer)  # `evaluate` in two steps: computed once
    return _PricedOrder(item, event, buyer, points, dict(qualifying_spend(program, event)))


async def _record_orders(pg: PgConnection, merchant_id: str, work: Sequence[_Work]) -> None:
    """Price the round's paid orders, record them and what they taught us of their buyers, and
    set their intents. An order recorded before (the same order announced again under another
    webhook id) earns nothing: it earned once already; so does the second of two members
    claiming one order id in the same round."""
    if not work:
        return
    priced = [_price(item) for item in work]
    first = list({p.event.order_id: p for p in reversed(priced)}.values())[::-1]
    rows = await pg.fetch(
        INSERT_ORDERS,
        merchant_id,
        [p.event.order_id for p in first],
        [p.event.member_id for p in first],
        [p.event.occurred_at for p in first],
        [msgspec.json.encode(p.points.lines).decode() for p in first],
        [msgspec.json.encode(p.qualifying).decode() for p in first],
        [msgspec.json.encode(_bonus_keys(p)).decode() for p in first],
    )
    inserted = {row["order_id"] for row in rows}
    recorded = [p for p in first if p.event.order_id in inserted]
    for p in priced:
        p.item.recorded = False
    for p in recorded:
        p.item.recorded = True
    learned = [(p.event.member_id, found) for p in recorded if (found := _learned(p)) is not None]
    if learned:
        await pg.execute(
            UPDATE_BUYERS,
            merchant_id,
            [member_id for member_id, _ in learned],
            [msgspec.json.encode(categories).decode() for _, (categories, _) in learned],
            [promotion_points for _, (_, promotion_points) in learned],
        )
    for p in recorded:
        program = p.item.version.program
        p.item.intents = order_intents(p.event, p.points, program) + await referral_intents(
            pg,
            merchant_id,
            program,
            p.event,
            eligible_total_minor=sum(p.qualifying.values()),
        )


def _bonus_keys(order: _PricedOrder) -> dict[str, int]:
    """The ledger keys of the order's bonus earns, by which a refund finds them again."""
    key = order_earn_key(order.event.order_id)
    return {f"{key}:{bonus.source}": bonus.points for bonus in order.points.bonuses}


def _learned(order: _PricedOrder) -> tuple[list[str], str] | None:
    """The buyer's categories and promotion points after this order; None if unchanged."""
    buyer = order.buyer
    promotion_points = dict(buyer.promotion_points or {})
    for line in order.points.lines:
        if line.promotion_id and line.promotion_extra > 0:
            promotion_points[line.promotion_id] = (
                promotion_points.get(line.promotion_id, 0) + line.promotion_extra
            )
    categories = buyer.categories_bought | {line.category for line in order.event.lines}
    if categories == buyer.categories_bought and promotion_points == (buyer.promotion_points or {}):
        return None
    return sorted(categories), msgspec.json.encode(promotion_points).decode()


async def _other_intents(pg: PgConnection, merchant_id: str, item: _Work) -> list[Intent]:
    """What a refund, a cancellation or an action earns or takes back."""
    event, program, member = item.event, item.version.program, item.member
    if isinstance(event, OrderRefunded | OrderCancelled):
        order = await _load_order(pg, merchant_id, event)
        intents = evaluate(event, MemberState(event.member_id, order=order), program)
        updated = await _record_refund(pg, merchant_id, event, order)
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
                key=f"{event.event_id}:{campaign.id}",
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


async def _load_order(
    pg: PgConnection, merchant_id: str, event: OrderRefunded | OrderCancelled
) -> OrderRecord:
    row = await pg.fetchrow(LOAD_ORDER, merchant_id, event.order_id)
    if row is None or row["member_id"] != event.member_id:
        raise UnknownOrder(
            f"merchant {merchant_id!r} has no paid order {event.order_id!r}"
            f" of member {event.member_id!r}"
        )
    return OrderRecord(
        order_id=event.order_id,
        lines=tuple(msgspec.json.decode(row["lines"], type=list[LinePoints])),
        bonus_keys=msgspec.json.decode(row["bonus_keys"], type=dict[str, int]),
        refunded=msgspec.json.decode(row["refunded"], type=dict[str, int]),
        cancelled=row["cancelled"],
        bonuses_returned=row["bonuses_returned"],
    )


async def _record_refund(
    pg: PgConnection,
    merchant_id: str,
    event: OrderRefunded | OrderCancelled,
    order: OrderRecord,
) -> OrderRecord:
    """Store the order's refunds and return its record as it now stands."""
    updated = after_refund(order, event)
    await pg.execute(
        UPDATE_ORDER,
        merchant_id,
        event.order_id,
        msgspec.json.encode(updated.refunded).decode(),
        updated.cancelled,
        updated.bonuses_returned,
    )
    return updated


async def _action_counts(
    pg: PgConnection, merchant_id: str, event: ActionPerformed
) -> ActionCounts:
    at = event.occurred_at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    row = await pg.fetchrow(
        ACTION_COUNTS,
        merchant_id,
        event.member_id,
        event.action,
        day,
        day.replace(day=1),
        day.replace(month=1, day=1),
        at,
    )
    return ActionCounts(row["today"], row["this_month"], row["this_year"], row["lifetime"])
