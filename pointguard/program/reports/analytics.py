"""Program analytics for one merchant and one period, aggregated in PostgreSQL.

The period is half-open, `[start, end)`: a moment at `start` is in it, a moment at `end` is not,
so consecutive periods neither overlap nor leave gaps. Two clocks are used, each where it is
the only one there is: the program's records (members, orders, actions, referrals) are dated by
the event's time (`occurred_at`, an order's `paid_at`), and the ledger's flows by the time the
entry was posted (`ledger_entries.created_at`), since an entry has no other date.

Definitions, stated once:
- **members**: members who joined before `end`; a member joined at the earlier of their
  `program_members` row's creation and their first applied event (an event can arrive late).
  **new_members**: those who joined within the period.
- **order value**: an order's net value, in minor units: the sum over its item lines that earn
  (`program_orders.qualifying`: a line's eligible spend, excluding gift cards, shipping and
  tax unless the program counts them) of the line's spend times its units kept over its units
  bought (`refunded` as recorded now, whenever the refund came), rounded down per line. A
  cancelled order is no purchase at all and counts nowhere below.
- **active_members**: members with an order paid within the period, or a rewarded action
  (a `program_actions` row with points) within it. **active_rate** = active / members.
- **purchasers**: members with at least one order paid within the period;
  **repeat_purchasers**: those with at least two. **repeat_purchase_rate** = repeat / purchasers.
- **average_order_value_minor**: total value of the orders paid within the period / their
  count, rounded half up to a whole minor unit. A fully refunded order counts at value 0.
- **lifetime_value_minor** (customer lifetime value to date): over the members with an order
  paid before `end` (from the beginning, not from `start`), the average of each one's total
  order value, rounded half up.
- **projected_annual_value_minor**: a simple projection of the same members' value over a year:
  the average of each one's monthly spend * 12, where monthly spend = value to date / active
  months, and active months = (`end` - the member's first paid order) in days / (365 / 12), at
  least 1 (so a brand-new customer is not extrapolated from one day). That is value to date *
  365 / max(days, 365 / 12) per member; the average is rounded half up.
- **issued_points**: points earned within the period (earn postings out of the merchant's
  `issued` account, -1). **taken_back_points**: points returned to `issued` by refund reversals
  and clawbacks within the period. **redeemed_points**, **expired_points**,
  **forfeited_points**: points posted to `redeemed` (-2), `expired` (-3), `forfeited` (-4)
  within the period.
- **redemption_rate** = redeemed / issued; **breakage_rate** = expired / issued (both within
  the period; issuance gross of take-backs).
- **liability_points**: outstanding liability at `end`: the balance of every member account
  (available + pending + reserved) from the entries posted before `end`; when `end` is not
  past, it equals `ledger.outstanding_liability`. **liability_minor** = liability_points *
  the `point_value_minor` of the program in force at `end`, rounded half up to a whole minor
  unit of the program's `currency`.
- **referrals**: referrals attached within the period (their `created_at`, the referee's
  signup or first order), self-referrals refused at the door excluded;
  **referrals_rewarded**: those of them whose referrer was rewarded (status `rewarded` now).
  **referral_conversion_rate** = rewarded / referrals.
- **members_by_tier**: the members per tier as they stand now (`None`: no tier), all members,
  whenever they joined: a tier has no history to read it at `end` from.

Every rate is a `Decimal` rounded half up to 4 places, or `None` when its denominator is 0;
averages in minor units are `None` when there is nothing to average.

Run `program_analytics` in one transaction (REPEATABLE READ for one snapshot across its
statements): it reads and never writes. Raises `ProgramNotFound` when no program is in force
at `end`, since there is then no point value to price the liability with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.errors import InvalidPeriod
from pointguard.ledger.accounts import SYSTEM_ACCOUNT_IDS, AccountKind
from pointguard.program.document.versions import program_in_force

RATE_PLACES = Decimal("0.0001")

# $1 merchant, $2 start, $3 end. Every subquery names the merchant.
SELECT_PROGRAM_METRICS = """
WITH orders AS (
    SELECT o.member_id, o.paid_at, (
        SELECT coalesce(sum(
            CASE WHEN l.quantity IS NULL THEN q.value::bigint
                 ELSE q.value::bigint * (l.quantity - least(
                     l.quantity, coalesce((o.refunded ->> q.key)::bigint, 0))) / l.quantity
            END), 0)
        FROM jsonb_each_text(o.qualifying) AS q
        LEFT JOIN LATERAL (
            SELECT (x ->> 'quantity')::bigint AS quantity
            FROM jsonb_array_elements(o.lines) AS x
            WHERE x ->> 'line_id' = q.key AND (x ->> 'quantity')::bigint > 0
            LIMIT 1
        ) AS l ON true
    ) AS value_minor
    FROM program_orders o
    WHERE o.merchant_id = $1 AND NOT o.cancelled AND o.paid_at < $3
),
buyers AS (
    SELECT member_id,
           count(*) FILTER (WHERE paid_at >= $2) AS period_orders,
           coalesce(sum(value_minor) FILTER (WHERE paid_at >= $2), 0) AS period_value_minor,
           sum(value_minor) AS lifetime_value_minor,
           min(paid_at) AS first_paid_at
    FROM orders GROUP BY member_id
),
active AS (
    SELECT member_id FROM buyers WHERE period_orders > 0
    UNION
    SELECT member_id FROM program_actions
    WHERE merchant_id = $1 AND points > 0 AND occurred_at >= $2 AND occurred_at < $3
),
joined AS (
    SELECT least(m.created_at, f.first_event_at) AS joined_at
    FROM program_members m
    LEFT JOIN (
        SELECT member_id, min(occurred_at) AS first_event_at
        FROM program_applied_events WHERE merchant_id = $1 GROUP BY member_id
    ) AS f ON f.member_id = m.member_id
    WHERE m.merchant_id = $1
),
referrals AS (
    SELECT count(*) AS attached, count(*) FILTER (WHERE status = 'rewarded') AS rewarded
    FROM program_referrals
    WHERE merchant_id = $1 AND status <> 'refused_self' AND created_at >= $2 AND created_at < $3
)
SELECT
    (SELECT count(*) FROM joined WHERE joined_at < $3) AS members,
    (SELECT count(*) FROM joined WHERE joined_at >= $2 AND joined_at < $3) AS new_members,
    (SELECT count(*) FROM active) AS active_members,
    count(*) FILTER (WHERE b.period_orders >= 1) AS purchasers,
    count(*) FILTER (WHERE b.period_orders >= 2) AS repeat_purchasers,
    coalesce(sum(b.period_orders), 0)::bigint AS orders,
    coalesce(sum(b.period_value_minor), 0)::bigint AS order_value_minor,
    count(*) AS lifetime_purchasers,
    round(avg(b.lifetime_value_minor))::bigint AS lifetime_value_minor,
    round(avg(b.lifetime_value_minor::numeric * 365 / greatest(
        365::numeric / 12,
        extract(epoch FROM $3::timestamptz - b.first_paid_at)::numeric / 86400
    )))::bigint AS projected_annual_value_minor,
    (SELECT attached FROM referrals) AS referrals,
    (SELECT rewarded FROM referrals) AS referrals_rewarded
FROM buyers b
"""

SELECT_LEDGER_METRICS = """
SELECT
    coalesce(-sum(p.amount_points) FILTER (
        WHERE p.account_id = $4 AND p.amount_points < 0 AND e.created_at >= $2), 0
    )::bigint AS issued,
    coalesce(sum(p.amount_points) FILTER (
        WHERE p.account_id = $4 AND p.amount_points > 0 AND e.created_at >= $2), 0
    )::bigint AS taken_back,
    coalesce(sum(p.amount_points) FILTER (
        WHERE p.account_id = $5 AND e.created_at >= $2), 0)::bigint AS redeemed,
    coalesce(sum(p.amount_points) FILTER (
        WHERE p.account_id = $6 AND e.created_at >= $2), 0)::bigint AS expired,
    coalesce(sum(p.amount_points) FILTER (
        WHERE p.account_id = $7 AND e.created_at >= $2), 0)::bigint AS forfeited,
    coalesce(sum(p.amount_points) FILTER (WHERE p.account_id > 0), 0)::bigint AS liability
FROM ledger_entries e
JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
WHERE e.merchant_id = $1 AND e.created_at < $3
"""


class LedgerMetricsPeriod(NamedTuple):
    """`SELECT_LEDGER_METRICS`'s parameters, in `$n` order."""

    merchant_id: str
    start: datetime
    end: datetime
    issued_account: int
    redeemed_account: int
    expired_account: int
    forfeited_account: int


COUNT_MEMBERS_BY_TIER = """
SELECT tier, count(*) AS members FROM program_members WHERE merchant_id = $1
GROUP BY tier ORDER BY tier NULLS LAST
"""


@dataclass(frozen=True)
class Analytics:
    """One merchant's program over `[start, end)`; the module docstring defines each field."""

    merchant_id: str
    start: datetime
    end: datetime
    members: int
    new_members: int
    active_members: int
    active_rate: Decimal | None
    purchasers: int
    repeat_purchasers: int
    repeat_purchase_rate: Decimal | None
    orders: int
    order_value_minor: int
    average_order_value_minor: int | None
    lifetime_purchasers: int
    lifetime_value_minor: int | None
    projected_annual_value_minor: int | None
    issued_points: int
    taken_back_points: int
    redeemed_points: int
    expired_points: int
    forfeited_points: int
    redemption_rate: Decimal | None
    breakage_rate: Decimal | None
    liability_points: int
    liability_minor: int
    currency: str
    point_value_minor: Decimal
    referrals: int
    referrals_rewarded: int
    referral_conversion_rate: Decimal | None
    members_by_tier: Mapping[str | None, int]


async def program_analytics(
    pg: PgConnection, merchant_id: str, *, start: datetime, end: datetime
) -> Analytics:
    """The merchant's program analytics over `[start, end)` (see the module docstring)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidPeriod("start and end must be timezone-aware")
    if start >= end:
        raise InvalidPeriod(f"the period must start before it ends, got {start} .. {end}")
    program = (await program_in_force(pg, merchant_id, end)).program
    p = await pg.fetchrow(SELECT_PROGRAM_METRICS, merchant_id, start, end)
    ids = SYSTEM_ACCOUNT_IDS
    period = LedgerMetricsPeriod(
        merchant_id=merchant_id,
        start=start,
        end=end,
        issued_account=ids[AccountKind.ISSUED],
        redeemed_account=ids[AccountKind.REDEEMED],
        expired_account=ids[AccountKind.EXPIRED],
        forfeited_account=ids[AccountKind.FORFEITED],
    )
    ledger = await pg.fetchrow(SELECT_LEDGER_METRICS, *period)
    tiers = {r["tier"]: r["members"] for r in await pg.fetch(COUNT_MEMBERS_BY_TIER, merchant_id)}
    liability_minor = (ledger["liability"] * program.point_value_minor).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return Analytics(
        merchant_id=merchant_id,
        start=start,
        end=end,
        members=p["members"],
        new_members=p["new_members"],
        active_members=p["active_members"],
        active_rate=_rate(p["active_members"], p["members"]),
        purchasers=p["purchasers"],
        repeat_purchasers=p["repeat_purchasers"],
        repeat_purchase_rate=_rate(p["repeat_purchasers"], p["purchasers"]),
        orders=p["orders"],
        order_value_minor=p["order_value_minor"],
        average_order_value_minor=_average(p["order_value_minor"], p["orders"]),
        lifetime_purchasers=p["lifetime_purchasers"],
        lifetime_value_minor=p["lifetime_value_minor"],
        projected_annual_value_minor=p["projected_annual_value_minor"],
        issued_points=ledger["issued"],
        taken_back_points=ledger["taken_back"],
        redeemed_points=ledger["redeemed"],
        expired_points=ledger["expired"],
        forfeited_points=ledger["forfeited"],
        redemption_rate=_rate(ledger["redeemed"], ledger["issued"]),
        breakage_rate=_rate(ledger["expired"], ledger["issued"]),
        liability_points=ledger["liability"],
        liability_minor=int(liability_minor),
        currency=program.currency,
        point_value_minor=program.point_value_minor,
        referrals=p["referrals"],
        referrals_rewarded=p["referrals_rewarded"],
        referral_conversion_rate=_rate(p["referrals_rewarded"], p["referrals"]),
        members_by_tier=tiers,
    )


def _rate(numerator: int, denominator: int) -> Decimal | None:
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATE_PLACES, ROUND_HALF_UP)


def _average(total_minor: int, count: int) -> int | None:
    if count == 0:
        return None
    return int((Decimal(total_minor) / Decimal(count)).quantize(Decimal(1), ROUND_HALF_UP))
