"""Program use cases: apply one event, inside the caller's transaction.

The one place where the program meets the database: it marks the event applied (a second
application does nothing), locks the member's program row (events of one member apply one at a
time), loads what the rules need, calls the pure `rules.evaluate`, posts the intents to the
ledger, records the order or action, and writes outbox events for the storefront, all in the
caller's transaction, so that all of it happens exactly once or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import UnknownOrder
from pointguard.ledger import AccountKind, EntryKind, PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.actions import ActionCounts
from pointguard.program.challenges import (
    Activity,
    ChallengeProgress,
    challenge_progress,
    goals_touched,
)
from pointguard.program.document import Challenge, Program
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
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    MemberState,
    OrderRecord,
    TakeBackIntent,
    after_refund,
    evaluate,
    lot_expiry,
    order_earn_key,
    order_intents,
)
from pointguard.program.store import program_in_force
from pointguard.program.tiers import TierDecision, TierStatus, decide_tier, qualification_window

MAX_TIER_REVIEWS = 500

EVENT_TYPES: dict[type[Event], str] = {
    OrderPaid: "order.paid",
    OrderRefunded: "order.refunded",
    OrderCancelled: "order.cancelled",
    ActionPerformed: "action.performed",
}

MARK_APPLIED = """
INSERT INTO program_applied_events (merchant_id, event_id, event_type, member_id, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, event_id) DO NOTHING
RETURNING event_id
"""

LOCK_MEMBER = """
INSERT INTO program_members AS m (merchant_id, member_id) VALUES ($1, $2)
ON CONFLICT (merchant_id, member_id) DO UPDATE SET member_id = m.member_id
RETURNING tier, tier_review_at, birthday, categories_bought,
          promotion_points::text AS promotion_points
"""

SET_TIER = """
UPDATE program_members SET tier = $3, tier_review_at = $4 WHERE merchant_id = $1 AND member_id = $2
"""

ORDERS_IN_WINDOW = """
SELECT paid_at, lines::text AS lines, qualifying::text AS qualifying,
       refunded::text AS refunded, bonus_keys::text AS bonus_keys, bonuses_returned
FROM program_orders
WHERE merchant_id = $1 AND member_id = $2 AND paid_at > $3 AND paid_at <= $4 AND NOT cancelled
"""

ACTION_POINTS_IN_WINDOW = """
SELECT coalesce(sum(points), 0)::bigint FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND occurred_at > $3 AND occurred_at <= $4
"""

REVIEWS_IN_WINDOW = """
SELECT occurred_at FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = 'review.published'
  AND occurred_at > $3 AND occurred_at <= $4
"""

COMPLETED_CHALLENGES = """
SELECT challenge_id, badge, completed_at FROM program_challenge_completions
WHERE merchant_id = $1 AND member_id = $2 ORDER BY completed_at, challenge_id
"""

COMPLETE_CHALLENGE = """
INSERT INTO program_challenge_completions
    (merchant_id, member_id, challenge_id, badge, completed_at)
VALUES ($1, $2, $3, $4, $5)
"""

TIERS_DUE = """
SELECT member_id FROM program_members
WHERE merchant_id = $1 AND tier_review_at <= $2 ORDER BY tier_review_at LIMIT $3
"""

UPDATE_BUYER = """
UPDATE program_members SET categories_bought = $3, promotion_points = $4::jsonb
WHERE merchant_id = $1 AND member_id = $2
"""

SET_BIRTHDAY = "UPDATE program_members SET birthday = $3 WHERE merchant_id = $1 AND member_id = $2"

LOAD_ORDER = """
SELECT member_id, lines::text AS lines, bonus_keys::text AS bonus_keys,
       refunded::text AS refunded, cancelled, bonuses_returned
FROM program_orders WHERE merchant_id = $1 AND order_id = $2 FOR UPDATE
"""

INSERT_ORDER = """
INSERT INTO program_orders
    (merchant_id, order_id, member_id, paid_at, lines, qualifying, bonus_keys)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb)
ON CONFLICT (merchant_id, order_id) DO NOTHING
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

WRITE_OUTBOX = """
INSERT INTO outbox (merchant_id, event_type, payload)
SELECT $1, * FROM unnest($2::text[], $3::jsonb[])
"""


@dataclass(frozen=True)
class Applied:
    event_id: str
    program_version: int | None
    entries: list[PostedEntry] = field(default_factory=list)
    already_applied: bool = False


async def apply_event(pg: PgConnection, merchant_id: str, event: Event) -> Applied:
    """Apply `event` to its member under the program in force at the event's time."""
    if (
        await pg.fetchval(
            MARK_APPLIED,
            merchant_id,
            event.event_id,
            EVENT_TYPES[type(event)],
            event.member_id,
            event.occurred_at,
        )
        is None
    ):
        return Applied(event.event_id, None, already_applied=True)
    version = await program_in_force(pg, merchant_id, event.occurred_at)
    program = version.program
    member = await pg.fetchrow(LOCK_MEMBER, merchant_id, event.member_id)
    buyer = Buyer(
        tier=member["tier"],
        categories_bought=frozenset(member["categories_bought"]),
        promotion_points=msgspec.json.decode(member["promotion_points"]),
    )

    if isinstance(event, OrderPaid):
        points = order_points(program, event, buyer)  # `evaluate` in two steps: computed once
        intents = order_intents(event, points, program)
        await _record_order(pg, merchant_id, event, buyer, points, program)
    elif isinstance(event, OrderRefunded | OrderCancelled):
        order = await _load_order(pg, merchant_id, event)
        intents = evaluate(event, MemberState(event.member_id, order=order), program)
        await _record_refund(pg, merchant_id, event, order)
    elif isinstance(event, ActionPerformed):
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
    else:
        raise TypeError(f"no service for {type(event).__name__}")

    kind = _activity_kind(event, intents)
    if kind is not None:
        intents += await complete_challenges(
            pg, merchant_id, event.member_id, program, kind, event.occurred_at
        )
    entries = await _post(pg, merchant_id, event.member_id, intents)
    await _write_outbox(pg, merchant_id, event.member_id, entries)
    current = TierStatus(member["tier"], member["tier_review_at"])
    await refresh_tier(pg, merchant_id, event.member_id, program, current, event.occurred_at)
    return Applied(event.event_id, version.version, entries)


async def refresh_tier(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    status: TierStatus,
    at: datetime,
) -> TierDecision:
    """Re-decide the member's tier at `at`; store it, and tell the storefront if it changed."""
    tiers = program.tiers
    now_amount = await qualifying_amount(
        pg, merchant_id, member_id, program, *qualification_window(tiers, at)
    )
    due = status.review_at is not None and at >= status.review_at
    period_amount = (
        await qualifying_amount(
            pg, merchant_id, member_id, program, *qualification_window(tiers, status.review_at)
        )
        if due and status.review_at is not None
        else 0
    )
    decision = decide_tier(
        program, status, now_amount=now_amount, period_amount=period_amount, at=at
    )
    if decision.status != status:
        await pg.execute(
            SET_TIER, merchant_id, member_id, decision.status.tier, decision.status.review_at
        )
    if decision.changed:
        payload = msgspec.json.encode(
            {
                "member_id": member_id,
                "from": decision.changed_from,
                "to": decision.status.tier,
                "reason": decision.reason,
                "review_at": decision.status.review_at,
                "at": at,
            }
        ).decode()
        await pg.execute(WRITE_OUTBOX, merchant_id, ["tier.changed"], [payload])
    return decision


@dataclass(frozen=True)
class KeptOrder:
    paid_at: datetime
    spend_minor: int  # eligible spend of the items still kept
    points: int  # points still kept, bonuses included unless they went back


async def kept_orders(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[KeptOrder]:
    """The member's orders paid in (start, end], not cancelled, net of refunds."""
    kept = []
    for row in await pg.fetch(ORDERS_IN_WINDOW, merchant_id, member_id, start, end):
        record = OrderRecord(
            order_id="",
            lines=tuple(msgspec.json.decode(row["lines"], type=list[LinePoints])),
            bonus_keys=msgspec.json.decode(row["bonus_keys"], type=dict[str, int]),
            refunded=msgspec.json.decode(row["refunded"], type=dict[str, int]),
            bonuses_returned=row["bonuses_returned"],
        )
        spend = msgspec.json.decode(row["qualifying"], type=dict[str, int])
        kept.append(
            KeptOrder(
                row["paid_at"],
                sum(
                    amount * record.units_kept(line) // line.quantity
                    for line in record.lines
                    if (amount := spend.get(line.line_id))
                ),
                record.points_kept(),
            )
        )
    return kept


async def qualifying_amount(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    start: datetime,
    end: datetime,
) -> int:
    """What the member's orders (and, for points, actions) in (start, end] count toward tiers."""
    orders = await kept_orders(pg, merchant_id, member_id, start, end)
    if program.tiers.basis == "spend":
        return sum(order.spend_minor for order in orders)
    actions = await pg.fetchval(ACTION_POINTS_IN_WINDOW, merchant_id, member_id, start, end)
    return sum(order.points for order in orders) + int(actions)


def _activity_kind(event: Event, intents: list[Intent]) -> str | None:
    """What the event counts as for challenges: a paid order, a rewarded review, or nothing."""
    if isinstance(event, OrderPaid):
        return "order"
    if isinstance(event, ActionPerformed) and event.action == "review.published" and intents:
        return "review"
    return None


async def member_activity(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[Activity]:
    orders = await kept_orders(pg, merchant_id, member_id, start, end)
    reviews = await pg.fetch(REVIEWS_IN_WINDOW, merchant_id, member_id, start, end)
    return [Activity(o.paid_at, "order", o.spend_minor) for o in orders] + [
        Activity(r["occurred_at"], "review") for r in reviews
    ]


async def complete_challenges(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    kind: str,
    at: datetime,
) -> list[Intent]:
    """Complete the challenges that an activity of `kind` at `at` finishes: record the badge,
    tell the storefront, and return the bonus earns."""
    done = {r["challenge_id"] for r in await pg.fetch(COMPLETED_CHALLENGES, merchant_id, member_id)}
    open_challenges = [
        c for c in program.challenges if c.id not in done and c.goal in goals_touched(kind)
    ]
    if not open_challenges:
        return []
    activity = await member_activity(
        pg, merchant_id, member_id, at - timedelta(days=_lookback_days(open_challenges)), at
    )
    intents: list[Intent] = []
    for challenge in open_challenges:
        if not challenge_progress(challenge, activity, at).completed:
            continue
        await pg.execute(
            COMPLETE_CHALLENGE, merchant_id, member_id, challenge.id, challenge.badge, at
        )
        payload = msgspec.json.encode(
            {
                "member_id": member_id,
                "challenge_id": challenge.id,
                "badge": challenge.badge,
                "bonus_points": challenge.bonus_points,
                "at": at,
            }
        ).decode()
        await pg.execute(WRITE_OUTBOX, merchant_id, ["challenge.completed"], [payload])
        if challenge.bonus_points:
            intents.append(
                EarnIntent(
                    f"challenge:{challenge.id}:{member_id}",
                    challenge.bonus_points,
                    f"{challenge.bonus_points} bonus points: '{challenge.name}' completed,"
                    f" badge {challenge.badge!r}",
                    f"challenge:{challenge.id}",
                    None,
                    lot_expiry(program, at),
                )
            )
    return intents


def _lookback_days(challenges: list[Challenge]) -> int:
    """History that the challenges can look at: their windows, and whole streaks."""
    longest_streak = max(
        (
            c.target * (7 if c.goal == "streak_weeks" else 31)
            for c in challenges
            if c.goal.startswith("streak")
        ),
        default=0,
    )
    return max(max(c.window_days for c in challenges), longest_streak) + 1


async def member_challenges(
    pg: PgConnection, merchant_id: str, member_id: str, at: datetime
) -> list[tuple[ChallengeProgress, datetime | None]]:
    """Each challenge of the program in force, with the member's progress and completion."""
    program = (await program_in_force(pg, merchant_id, at)).program
    done = {
        r["challenge_id"]: r["completed_at"]
        for r in await pg.fetch(COMPLETED_CHALLENGES, merchant_id, member_id)
    }
    if not program.challenges:
        return []
    activity = await member_activity(
        pg, merchant_id, member_id, at - timedelta(days=_lookback_days(program.challenges)), at
    )
    return [(challenge_progress(c, activity, at), done.get(c.id)) for c in program.challenges]


async def review_tiers(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Review members whose tier review is due (downgrades happen here for members who buy
    nothing); returns how many changed tier. Run it daily."""
    changed = 0
    for row in await pg.fetch(TIERS_DUE, merchant_id, now, MAX_TIER_REVIEWS):
        member = await pg.fetchrow(LOCK_MEMBER, merchant_id, row["member_id"])
        program = (await program_in_force(pg, merchant_id, now)).program
        status = TierStatus(member["tier"], member["tier_review_at"])
        decision = await refresh_tier(pg, merchant_id, row["member_id"], program, status, now)
        changed += decision.changed
    return changed


async def _post(
    pg: PgConnection, merchant_id: str, member_id: str, intents: list[Intent]
) -> list[PostedEntry]:
    earns = [
        ops.earn_entry(
            merchant_id,
            member_id,
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
    entries = await post_entries(pg, earns) if earns else []
    for intent in intents:
        if not isinstance(intent, TakeBackIntent):
            continue
        earned = (await load_entries_by_key(pg, merchant_id, [intent.earn_key])).get(
            intent.earn_key
        )
        if earned is not None:
            entries += await ops.take_back(
                pg,
                merchant_id,
                earned.entry_id,
                intent.points,
                key=intent.key,
                description=intent.description,
                source=intent.source,
            )
    return entries


async def _record_order(
    pg: PgConnection,
    merchant_id: str,
    event: OrderPaid,
    buyer: Buyer,
    points: OrderPoints,
    program: Program,
) -> None:
    bonus_keys = {f"{order_earn_key(event.order_id)}:{b.source}": b.points for b in points.bonuses}
    await pg.execute(
        INSERT_ORDER,
        merchant_id,
        event.order_id,
        event.member_id,
        event.occurred_at,
        msgspec.json.encode(points.lines).decode(),
        msgspec.json.encode(qualifying_spend(program, event)).decode(),
        msgspec.json.encode(bonus_keys).decode(),
    )
    promotion_points = dict(buyer.promotion_points or {})
    for line in points.lines:
        if line.promotion_id and line.promotion_extra > 0:
            promotion_points[line.promotion_id] = (
                promotion_points.get(line.promotion_id, 0) + line.promotion_extra
            )
    categories = sorted(buyer.categories_bought | {line.category for line in event.lines})
    await pg.execute(
        UPDATE_BUYER,
        merchant_id,
        event.member_id,
        categories,
        msgspec.json.encode(promotion_points).decode(),
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
) -> None:
    updated = after_refund(order, event)
    await pg.execute(
        UPDATE_ORDER,
        merchant_id,
        event.order_id,
        msgspec.json.encode(updated.refunded).decode(),
        updated.cancelled,
        updated.bonuses_returned,
    )


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


async def _write_outbox(
    pg: PgConnection, merchant_id: str, member_id: str, entries: list[PostedEntry]
) -> None:
    fresh = [e for e in entries if not e.replayed]
    if not fresh:
        return
    types = [_outbox_type(e) for e in fresh]
    payloads = [
        msgspec.json.encode(
            {
                "member_id": member_id,
                "entry_id": e.entry_id,
                "kind": e.kind.value,
                "points": sum(p.amount_points for p in e.postings if p.amount_points > 0),
                "description": e.description,
                "at": e.created_at,
            }
        ).decode()
        for e in fresh
    ]
    await pg.execute(WRITE_OUTBOX, merchant_id, types, payloads)


def _outbox_type(entry: PostedEntry) -> str:
    if entry.kind != EntryKind.EARN:
        return "points.reversed"
    pending = any(p.account.kind == AccountKind.PENDING for p in entry.postings)
    return "points.pending" if pending else "points.earned"
