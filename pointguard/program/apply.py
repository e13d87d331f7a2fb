"""Applying events: the program's pipeline, inside the caller's transaction.

The one place where the program's decisions meet the database. Each feature is one step of
the same shape, load → decide → store: its records module loads what its pure `rules.py`
needs, the rules decide (intents for the ledger, events for the storefront), and the records
module stores the outcome. This module runs the steps in order, posts every intent to the
ledger and writes the outbox once, all in the caller's transaction, so that an event's effects
happen exactly once or not at all:

    mark applied → program in force → lock members
    → paid orders → refunds and cancellations → actions → referrals → challenges
    → guard → post to the ledger → tiers → scratch cards → outbox

The guard (`fraud/guard.py`, when the caller passes one: the server's workers always do)
decides every earn clear or hold; a held earn is posted pending with its release held, whatever
its return window says, until a reviewer clears it (`review.py`).

Workers hand over whole batches, which go set-wise (a statement per step, not per event) where
the step is common: paid orders, referrals and the ledger postings. Refunds and actions are
rarer and go one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from msgspec import structs

from pointguard.db import PgConnection
from pointguard.fraud.guard import (
    Guard,
    Reward,
    ScreenedEvent,
    Verdict,
    record_verdicts,
    screen_round,
)
from pointguard.ledger import PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.actions.records import load_action_counts, store_actions, store_birthday
from pointguard.program.actions.rules import action_earns
from pointguard.program.challenges.completions import (
    load_activity,
    load_completions,
    store_challenges,
)
from pointguard.program.challenges.rules import (
    ActivityKind,
    challenges_moved_by,
    completion_window,
    decide_completions,
    decide_revocations,
    open_challenges,
    order_completions,
    revocation_window,
)
from pointguard.program.chance.scratch_cards import (
    ScratchCard,
    campaigns_granted_on,
    draw_scratch_card,
)
from pointguard.program.document.versions import ProgramVersion, programs_in_force
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from pointguard.program.intents import EarnIntent, Intent, OutboxEvent, TakeBackIntent
from pointguard.program.members import MemberRecord, lock_members
from pointguard.program.orders.records import load_order, record_orders, store_refund
from pointguard.program.orders.rules import decide_paid_order, decide_refund
from pointguard.program.outbox import entry_events, write_events
from pointguard.program.referrals.records import (
    has_earlier_orders,
    load_code_owner,
    lock_referrals,
    lock_referrer_counts,
    register_own_code,
    store_attachment,
    store_referral,
)
from pointguard.program.referrals.rules import (
    ReferralStatus,
    counts_referrals,
    decide_attachment,
    decide_referral,
    decide_reversal,
    may_reverse,
    referrer_reward_due,
)
from pointguard.program.tiers.review import review_tier

EVENT_TYPES: dict[type[Event], str] = {
    OrderPaid: "order.paid",
    OrderRefunded: "order.refunded",
    OrderCancelled: "order.cancelled",
    ActionPerformed: "action.performed",
}

MARK_EVENTS_APPLIED = """
INSERT INTO program_applied_events (merchant_id, event_id, event_type, member_id, occurred_at)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (merchant_id, event_id) DO NOTHING
RETURNING event_id
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
    """One event of a round on its way through the steps: what it earns so far."""

    index: int
    event: Event
    version: ProgramVersion
    member: MemberRecord
    intents: list[Intent] = field(default_factory=list)
    recorded: bool = True  # False: a paid order recorded before, under another webhook id
    eligible_total_minor: int = 0  # of a paid order: what referrals compare to their minimum
    activity: ActivityKind | None = None  # what it counts as for challenges, if anything
    rewarded_referrer: str | None = None  # whose referral it rewarded: their challenges move
    referrer_id: str | None = None  # who referred the event's member, for the guard


async def apply_event(
    pg: PgConnection, merchant_id: str, event: Event, *, guard: Guard | None = None
) -> Applied:
    """Apply `event` to its member under the program in force at the event's time."""
    return (await apply_events(pg, merchant_id, [event], guard=guard))[0]


async def apply_events(
    pg: PgConnection, merchant_id: str, events: Sequence[Event], *, guard: Guard | None = None
) -> list[Applied]:
    """Apply `events`, each exactly once, each member's in the order given, and return what
    each did, in that order.

    Set-wise, because one statement per step for a hundred events costs about what one event
    costs alone (round trips, not PostgreSQL's work, are the price): the events go in rounds,
    the k-th event of every member in round k, so that no member appears twice in a round.
    A round marks its events applied, finds their program versions and locks their members in
    one statement each (members sorted, so that concurrent callers lock in one global order).
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
        if todo:
            applied.update(await _apply_round(pg, merchant_id, todo, guard))
    return [applied[index] for index in range(len(events))]


async def _apply_round(
    pg: PgConnection, merchant_id: str, todo: Sequence[tuple[int, Event]], guard: Guard | None
) -> dict[int, Applied]:
    versions = await programs_in_force(pg, merchant_id, [e.occurred_at for _, e in todo])
    members = await lock_members(pg, merchant_id, [e for _, e in todo])
    work = [
        _Work(index, event, version, members[event.member_id])
        for (index, event), version in zip(todo, versions, strict=True)
    ]
    outbox: list[OutboxEvent] = []
    await _paid_orders(pg, merchant_id, work)
    for item in work:
        if isinstance(item.event, OrderRefunded | OrderCancelled):
            outbox += await _refund(pg, merchant_id, item, item.event)
        elif isinstance(item.event, ActionPerformed):
            await _action(pg, merchant_id, item, item.event)
    await _referrals(pg, merchant_id, work)
    outbox += await _challenges(pg, merchant_id, work)
    verdicts = [] if guard is None else await _screen(pg, merchant_id, guard, work)
    posted = await _post(pg, merchant_id, [(w.event.member_id, w.intents) for w in work])
    outbox += await _hold(pg, merchant_id, verdicts, posted)
    outbox += entry_events([entry for entries in posted for entry in entries])
    applied: dict[int, Applied] = {}
    for item, entries in zip(work, posted, strict=True):
        event, version = item.event, item.version
        cards: list[ScratchCard] = []
        if item.recorded:
            outbox += await review_tier(
                pg,
                merchant_id,
                event.member_id,
                version.program,
                item.member.tier,
                event.occurred_at,
            )
            for campaign in campaigns_granted_on(version.program, EVENT_TYPES[type(event)]):
                card, card_events = await draw_scratch_card(
                    pg,
                    merchant_id,
                    event.member_id,
                    campaign.id,
                    key=idempotency_key("scratch-card", event.event_id, campaign.id),
                    now=event.occurred_at,
                )
                cards.append(card)
                outbox += card_events
        applied[item.index] = Applied(event.event_id, version.version, entries, scratch_cards=cards)
    await write_events(pg, merchant_id, outbox)
    return applied


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
            MARK_EVENTS_APPLIED,
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


async def _paid_orders(pg: PgConnection, merchant_id: str, work: Sequence[_Work]) -> None:
    """Decide every paid order of the round, and record them together: an order recorded
    before (under another webhook id) earns nothing."""
    paid = [(item, event) for item in work if isinstance(event := item.event, OrderPaid)]
    decisions = [
        decide_paid_order(event, item.version.program, item.member.buyer) for item, event in paid
    ]
    recorded = await record_orders(pg, merchant_id, decisions)
    for (item, _), decision, is_new in zip(paid, decisions, recorded, strict=True):
        item.recorded = is_new
        if is_new:
            item.intents += decision.intents
            item.eligible_total_minor = decision.eligible_total_minor
            item.activity = "order"


async def _refund(
    pg: PgConnection, merchant_id: str, item: _Work, event: OrderRefunded | OrderCancelled
) -> list[OutboxEvent]:
    """A refund or cancellation: the order's points back, then a referral it reverses and the
    challenges the orders still kept no longer complete."""
    program, member_id = item.version.program, event.member_id
    refund = decide_refund(event, await load_order(pg, merchant_id, event))
    await store_refund(pg, merchant_id, refund.order)
    item.intents += refund.intents
    if may_reverse(program, refund.order):
        referral = (await lock_referrals(pg, merchant_id, [member_id])).get(member_id)
        if referral is not None:
            reversal = decide_reversal(program, referral, refund.order)
            if reversal.referral != referral:
                await store_referral(pg, merchant_id, reversal.referral)
            item.intents += reversal.intents
    if not challenges_moved_by(program, "order"):
        return []
    completed = order_completions(program, await load_completions(pg, merchant_id, member_id))
    if not completed:
        return []
    activity = await load_activity(pg, merchant_id, member_id, *revocation_window(completed))
    revoked = decide_revocations(member_id, completed, activity, event.occurred_at)
    await store_challenges(pg, merchant_id, member_id, revoked, event.occurred_at)
    item.intents += revoked.intents
    return revoked.events


async def _action(pg: PgConnection, merchant_id: str, item: _Work, event: ActionPerformed) -> None:
    await store_birthday(pg, merchant_id, event)
    counts = await load_action_counts(pg, merchant_id, event)
    earns = action_earns(item.version.program, event, counts, item.member.birthday)
    await store_actions(pg, merchant_id, event, earns)
    item.intents += earns
    if earns and event.action == "review.published":
        item.activity = "review"


async def _referrals(pg: PgConnection, merchant_id: str, work: Sequence[_Work]) -> None:
    """Signups and paid orders: attach the codes they bring, then the referee's welcome and, on
    a first paid order, the referrer's reward. The round's referrals are locked in one
    statement; a referrer's counts are read under the referrer's lock, one reward at a time,
    so that two referees of one referrer cannot both take the last place under a cap."""
    items = [w for w in work if w.recorded and counts_referrals(w.version.program, w.event)]
    # Codes the storefront gave before are registered first, so that a referee in the same
    # round finds their referrer's code whatever the order of the two within it.
    for item in items:
        event = item.event
        if isinstance(event, ActionPerformed) and event.own_referral_code is not None:
            await register_own_code(pg, merchant_id, event.member_id, event.own_referral_code)
    for item in items:
        event = item.event
        assert isinstance(event, ActionPerformed | OrderPaid)
        if event.referral_code is None:
            continue
        owner = await load_code_owner(pg, merchant_id, event.referral_code)
        if owner is None:
            continue
        earlier = await has_earlier_orders(pg, merchant_id, event)
        attached = decide_attachment(event, owner, earlier_orders=earlier)
        if attached is not None:
            await store_attachment(pg, merchant_id, attached, event.occurred_at)
    if not items:
        return
    referrals = await lock_referrals(pg, merchant_id, [w.event.member_id for w in items])
    for item in items:
        event, program = item.event, item.version.program
        assert isinstance(event, ActionPerformed | OrderPaid)
        referral = referrals.get(event.member_id)
        if referral is None:
            continue
        counts = None
        if referrer_reward_due(program, event, referral, item.eligible_total_minor):
            counts = await lock_referrer_counts(
                pg, merchant_id, referral.referrer_id, event.occurred_at
            )
        decision = decide_referral(
            program,
            event,
            referral,
            eligible_total_minor=item.eligible_total_minor,
            referrer=counts,
        )
        if decision.referral != referral:
            await store_referral(pg, merchant_id, decision.referral)
        item.intents += decision.intents
        if referral.status != ReferralStatus.REFUSED_SELF:
            item.referrer_id = referral.referrer_id
        if decision.referral.status == ReferralStatus.REWARDED != referral.status:
            item.rewarded_referrer = referral.referrer_id


async def _challenges(
    pg: PgConnection, merchant_id: str, work: Sequence[_Work]
) -> list[OutboxEvent]:
    """The challenges each event's activity completes: the member's, and for a rewarded
    referral the referrer's."""
    events: list[OutboxEvent] = []
    for item in work:
        if item.activity is not None:
            events += await _complete(pg, merchant_id, item, item.event.member_id, item.activity)
        if item.rewarded_referrer not in (None, item.event.member_id):
            assert item.rewarded_referrer is not None
            events += await _complete(pg, merchant_id, item, item.rewarded_referrer, "referral")
    return events


async def _complete(
    pg: PgConnection, merchant_id: str, item: _Work, member_id: str, kind: ActivityKind
) -> list[OutboxEvent]:
    program, at = item.version.program, item.event.occurred_at
    if not challenges_moved_by(program, kind):
        return []
    completions = await load_completions(pg, merchant_id, member_id)
    still_open = open_challenges(program, kind, completions)
    if not still_open:
        return []
    activity = await load_activity(pg, merchant_id, member_id, *completion_window(still_open, at))
    decision = decide_completions(program, member_id, kind, completions, activity, at)
    await store_challenges(pg, merchant_id, member_id, decision, at)
    item.intents += decision.intents
    return decision.events


async def _screen(
    pg: PgConnection, merchant_id: str, guard: Guard, work: Sequence[_Work]
) -> list[Verdict]:
    """The guard's verdict on every earn of the round; a held earn is to be posted pending
    (from when it was due), so that only a reviewer's clearing can release it."""
    screened = [
        ScreenedEvent(
            event_id=item.event.event_id,
            member_id=item.event.member_id,
            occurred_at=item.event.occurred_at,
            signals=item.event.signals,
            policy=item.version.program.guard,
            return_window_days=item.version.program.return_window_days,
            rewards=[
                Reward(i.key, i.points, i.source, i.member_id or item.event.member_id, i.release_at)
                for i in item.intents
                if isinstance(i, EarnIntent)
            ],
            referrer_id=item.referrer_id,
        )
        for item in work
        if item.recorded
    ]
    verdicts = await screen_round(pg, merchant_id, guard, screened)
    held = {v.reward.key: v.release_at for v in verdicts if v.decision.held}
    for item in work:
        item.intents = [
            structs.replace(i, release_at=held[i.key])
            if isinstance(i, EarnIntent) and i.key in held
            else i
            for i in item.intents
        ]
    return verdicts


async def _hold(
    pg: PgConnection,
    merchant_id: str,
    verdicts: Sequence[Verdict],
    posted: Sequence[Sequence[PostedEntry]],
) -> list[OutboxEvent]:
    """Hold the release of what the guard held, and record its verdicts with their entries."""
    if not verdicts:
        return []
    entries = {entry.idempotency_key: entry for batch in posted for entry in batch}
    for verdict in verdicts:
        entry = entries.get(verdict.reward.key)
        if verdict.decision.held and entry is not None and not entry.replayed:
            await ops.set_release_held(pg, merchant_id, entry.entry_id, held=True)
    events = await record_verdicts(
        pg, merchant_id, verdicts, {key: entry.entry_id for key, entry in entries.items()}
    )
    return [OutboxEvent(event_type, payload) for event_type, payload in events]


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
