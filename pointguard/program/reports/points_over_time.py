"""The merchant's points over time, bucket by bucket, for the dashboard's charts.

The period `[start, end)` is cut into buckets of one day or one week from `start` (UTC
arithmetic: a day is 86,400 seconds); the last bucket ends at `end` and may be shorter. At most
`MAX_BUCKETS` buckets, so an answer stays a page a person can look at.

Per bucket, the flows within it (postings of entries posted in it, dated as analytics dates
them: `ledger_entries.created_at`):
- **issued**: points earned (earn postings out of the `issued` account, as `analytics`'
  `issued_points`; take-backs are not netted);
- **released**: points moved from pending to available by release entries;
- **redeemed**, **expired**, **forfeited**: points posted to those system accounts.

And the balances at the bucket's end, over every member, from every entry posted before it:
- **pending**, **available**, **reserved**, and **liability** = their sum (what the merchant
  owes; at a bucket ending now it equals `ledger.outstanding_liability`);
- **held**: the part of pending that the fraud guard holds: the pending points, at the end, of
  the earns it held (`fraud_decisions`, decision `hold`) whose review case was not yet cleared
  or confirmed by then (`fraud_cases.decided_at`; an escalated case still holds). A case's
  decision is dated by the app's clock and entries by the database's: the two agree in
  production, where both read the time of day.

Three statements' worth of work in one: sums of postings grouped by bucket, running sums over
the buckets (a window), and the held lots' pending postings joined to the buckets' ends; the
number of statements does not grow with the number of buckets. Run it in one snapshot
(REPEATABLE READ): it reads and never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pointguard.db import PgConnection
from pointguard.errors import InvalidPeriod
from pointguard.ledger.accounts import SYSTEM_ACCOUNT_IDS, AccountKind

MAX_BUCKETS = 366


class BucketSize(StrEnum):
    DAY = "day"
    WEEK = "week"


BUCKET_SECONDS = {BucketSize.DAY: 86_400, BucketSize.WEEK: 7 * 86_400}

# $1 merchant, $2 start, $3 end, $4 bucket length in seconds, $5 number of buckets,
# $6..$9 the issued, redeemed, expired and forfeited accounts. Bucket -1 gathers everything
# before `start`: the opening balances.
SELECT_POINTS_OVER_TIME = """
WITH series AS (
    SELECT i, least(
        $2::timestamptz + make_interval(secs => (i + 1)::double precision * $4::integer),
        $3::timestamptz
    ) AS ends
    FROM generate_series(-1, $5::integer - 1) AS i
),
moves AS (
    SELECT greatest(-1, floor(extract(epoch FROM e.created_at - $2) / $4))::int AS i,
           e.kind, a.kind AS account_kind, p.account_id, p.amount_points
    FROM ledger_entries e
    JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
    LEFT JOIN ledger_accounts a ON a.merchant_id = p.merchant_id AND a.account_id = p.account_id
    WHERE e.merchant_id = $1 AND e.created_at < $3
),
sums AS (
    SELECT i,
        coalesce(-sum(amount_points) FILTER (WHERE account_id = $6 AND amount_points < 0), 0)
            AS issued,
        coalesce(sum(amount_points) FILTER (
            WHERE kind = 'release' AND account_kind = 'available'), 0) AS released,
        coalesce(sum(amount_points) FILTER (WHERE account_id = $7), 0) AS redeemed,
        coalesce(sum(amount_points) FILTER (WHERE account_id = $8), 0) AS expired,
        coalesce(sum(amount_points) FILTER (WHERE account_id = $9), 0) AS forfeited,
        coalesce(sum(amount_points) FILTER (WHERE account_kind = 'pending'), 0) AS pending,
        coalesce(sum(amount_points) FILTER (WHERE account_kind = 'available'), 0) AS available,
        coalesce(sum(amount_points) FILTER (WHERE account_kind = 'reserved'), 0) AS reserved
    FROM moves GROUP BY i
),
held_lots AS (
    SELECT d.ledger_entry_id AS lot_id,
           CASE WHEN c.status IN ('cleared', 'confirmed') THEN c.decided_at END AS held_until
    FROM fraud_decisions d
    JOIN fraud_cases c ON c.merchant_id = d.merchant_id AND c.case_id = d.case_id
    WHERE d.merchant_id = $1 AND d.decision = 'hold' AND d.ledger_entry_id IS NOT NULL
),
held_moves AS (
    -- the pending postings of held earns: the earn itself, its release (`settles` it), its
    -- refunds and forfeit (which `reverse` it); one pass over the entries, hashed on the lots
    SELECT h.held_until, e.created_at, p.amount_points
    FROM ledger_entries e
    JOIN held_lots h ON h.lot_id = coalesce(e.settles, e.reverses, e.entry_id)
    JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
    JOIN ledger_accounts a ON a.merchant_id = p.merchant_id AND a.account_id = p.account_id
        AND a.kind = 'pending'
    WHERE e.merchant_id = $1 AND e.created_at < $3
),
held AS (
    SELECT s.i, sum(m.amount_points) AS held
    FROM series s
    JOIN held_moves m ON m.created_at < s.ends AND (m.held_until IS NULL OR m.held_until >= s.ends)
    GROUP BY s.i
)
SELECT * FROM (
    SELECT s.i, s.ends,
        coalesce(u.issued, 0)::bigint AS issued,
        coalesce(u.released, 0)::bigint AS released,
        coalesce(u.redeemed, 0)::bigint AS redeemed,
        coalesce(u.expired, 0)::bigint AS expired,
        coalesce(u.forfeited, 0)::bigint AS forfeited,
        sum(coalesce(u.pending, 0)) OVER running AS pending,
        sum(coalesce(u.available, 0)) OVER running AS available,
        sum(coalesce(u.reserved, 0)) OVER running AS reserved,
        coalesce(h.held, 0)::bigint AS held
    FROM series s
    LEFT JOIN sums u ON u.i = s.i
    LEFT JOIN held h ON h.i = s.i
    WINDOW running AS (ORDER BY s.i)
) AS buckets
WHERE i >= 0 ORDER BY i
"""


@dataclass(frozen=True)
class PointsBucket:
    """One bucket `[start, end)`: its flows and the balances at its end (see the module)."""

    start: datetime
    end: datetime
    issued_points: int
    released_points: int
    redeemed_points: int
    expired_points: int
    forfeited_points: int
    pending_points: int
    held_points: int
    available_points: int
    reserved_points: int

    @property
    def liability_points(self) -> int:
        return self.pending_points + self.available_points + self.reserved_points


def bucket_count(start: datetime, end: datetime, size: BucketSize) -> int:
    """How many buckets of `size` cut `[start, end)`; `InvalidPeriod` for a bad or too long
    period."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidPeriod("start and end must be timezone-aware")
    if start >= end:
        raise InvalidPeriod(f"the period must start before it ends, got {start} .. {end}")
    step = timedelta(seconds=BUCKET_SECONDS[size])
    count = -((start - end) // step)  # rounded up: the last bucket may be shorter
    if count > MAX_BUCKETS:
        raise InvalidPeriod(
            f"the period has {count} buckets of a {size.value}; at most {MAX_BUCKETS}:"
            " shorten it or take longer buckets"
        )
    return count


async def points_over_time(
    pg: PgConnection, merchant_id: str, *, start: datetime, end: datetime, size: BucketSize
) -> list[PointsBucket]:
    """The merchant's points bucket by bucket over `[start, end)` (see the module)."""
    count = bucket_count(start, end, size)
    ids = SYSTEM_ACCOUNT_IDS
    rows = await pg.fetch(
        SELECT_POINTS_OVER_TIME,
        merchant_id,
        start,
        end,
        BUCKET_SECONDS[size],
        count,
        ids[AccountKind.ISSUED],
        ids[AccountKind.REDEEMED],
        ids[AccountKind.EXPIRED],
        ids[AccountKind.FORFEITED],
    )
    step = timedelta(seconds=BUCKET_SECONDS[size])
    return [
        PointsBucket(
            start=start + r["i"] * step,
            end=r["ends"],
            issued_points=r["issued"],
            released_points=r["released"],
            redeemed_points=r["redeemed"],
            expired_points=r["expired"],
            forfeited_points=r["forfeited"],
            pending_points=int(r["pending"]),
            held_points=r["held"],
            available_points=int(r["available"]),
            reserved_points=int(r["reserved"]),
        )
        for r in rows
    ]
