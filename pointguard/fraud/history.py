"""Loading what the guard's features read, set-wise for a round of events: each member's recent
activity (from the program's record of applied events and referrals), how many other members
share each of their identifiers, what a referrer and a referee share, how a referee came to
their first order, when each of an event's devices and addresses was first seen for its member,
the size of each member's connected component, and the merchant's running median of points
earned in 24 hours. Every read is an index range, and how many members an identifier (or a
component) links is a counter kept as links are added (`links.py`), never a count over a busy
identifier's links. A per-member read is a lateral subquery fenced with `OFFSET 0`, which
the planner cannot flatten into a join, reading one table (a second is a scalar subquery):
flattened, or joined inside, it hashed the merchant's whole table every round or every member
(a sequential scan growing with the table) wherever its statistics made index probes look
dearer.

The running median is a frugal streaming estimate: each observation above it multiplies it by
`1 + MEDIAN_STEP`, each below divides it by that, so it settles where as many fall above as
below. A round moves it by at most `MAX_MEDIAN_STEPS_PER_ROUND` steps, and only a transaction
that gets the merchant's stats lock without waiting updates it (another round in flight skips
its observations): the statistic is approximate and never makes a batch wait or deadlock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.features import NOT_APPLICABLE, MemberHistory, hours_between
from pointguard.fraud.identity import LinkKind
from pointguard.fraud.links import SeenLink

MEDIAN_STEP = 0.02
MAX_MEDIAN_STEPS_PER_ROUND = 20  # at most a factor 1.02 ** 20, about 1.5, per round
MIN_MEDIAN_POINTS = 1.0
STATS_LOCK_CLASS = 0x66726473  # pg_try_advisory_xact_lock(class, hashtext(merchant)): "frds"

# $2, $3, $4: each member, the time of the event decided, and where the return window starts.
# One lateral read per source, each an index range of the member's own rows.
SELECT_MEMBER_HISTORIES = """
SELECT m.member_id, m.at, e.first_seen_at, e.has_paid_order, e.orders_1h, e.orders_24h,
       e.orders_30d,
       e.refunds_30d, o.orders_in_return_window, o.refunded_in_return_window,
       r.referrals_24h, r.referrals_7d, r.referrals_30d, lr.refunded_at, lo.paid_at,
       rv.reviews_24h, pts.decided_points_24h
FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS m(member_id, at, window_start)
CROSS JOIN LATERAL (
    SELECT (SELECT min(f.occurred_at) FROM program_applied_events f
            WHERE f.merchant_id = $1 AND f.member_id = m.member_id) AS first_seen_at,
           EXISTS (SELECT 1 FROM program_orders p
                   WHERE p.merchant_id = $1 AND p.member_id = m.member_id AND p.paid_at <= m.at)
               AS has_paid_order,
           count(*) FILTER (WHERE a.event_type = 'order.paid'
                            AND a.occurred_at > m.at - interval '1 hour') AS orders_1h,
           count(*) FILTER (WHERE a.event_type = 'order.paid'
                            AND a.occurred_at > m.at - interval '24 hours') AS orders_24h,
           count(*) FILTER (WHERE a.event_type = 'order.paid') AS orders_30d,
           count(*) FILTER (WHERE a.event_type IN ('order.refunded', 'order.cancelled'))
               AS refunds_30d
    FROM program_applied_events a
    WHERE a.merchant_id = $1 AND a.member_id = m.member_id
      AND a.occurred_at > m.at - interval '30 days' AND a.occurred_at <= m.at
) e
CROSS JOIN LATERAL (
    SELECT count(*) AS orders_in_return_window,
           count(*) FILTER (WHERE o.cancelled OR o.refunded <> '{}'::jsonb)
               AS refunded_in_return_window
    FROM program_orders o
    WHERE o.merchant_id = $1 AND o.member_id = m.member_id
      AND o.paid_at > m.window_start AND o.paid_at <= m.at
) o
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE r.rewarded_at > m.at - interval '24 hours') AS referrals_24h,
           count(*) FILTER (WHERE r.rewarded_at > m.at - interval '7 days') AS referrals_7d,
           count(*) AS referrals_30d
    FROM program_referrals r
    WHERE r.merchant_id = $1 AND r.referrer_id = m.member_id AND r.status = 'rewarded'
      AND r.rewarded_at > m.at - interval '30 days' AND r.rewarded_at <= m.at
) r
CROSS JOIN LATERAL (
    SELECT max(a.occurred_at) AS refunded_at FROM program_applied_events a
    WHERE a.merchant_id = $1 AND a.member_id = m.member_id
      AND a.occurred_at > m.window_start AND a.occurred_at <= m.at
      AND a.event_type IN ('order.refunded', 'order.cancelled')
) lr
LEFT JOIN LATERAL (
    SELECT o.paid_at FROM program_orders o
    WHERE o.merchant_id = $1 AND o.member_id = m.member_id
      AND o.paid_at <= lr.refunded_at AND o.paid_at > lr.refunded_at - (m.at - m.window_start)
      AND (o.cancelled OR o.refunded <> '{}'::jsonb)
    ORDER BY o.paid_at DESC LIMIT 1
) lo ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS reviews_24h FROM program_actions pa
    WHERE pa.merchant_id = $1 AND pa.member_id = m.member_id AND pa.action = 'review.published'
      AND pa.occurred_at > m.at - interval '24 hours' AND pa.occurred_at <= m.at
) rv
CROSS JOIN LATERAL (
    SELECT coalesce(sum(d.points), 0)::bigint AS decided_points_24h FROM fraud_decisions d
    WHERE d.merchant_id = $1 AND d.member_id = m.member_id
      AND d.decided_at > m.at - interval '24 hours' AND d.decided_at <= m.at
) pts
"""

# $2, $3: each event member and the event's time. A referee's first paid order is the one the
# referral counted (`first_order_id`), its minimum the program's in force when it was paid.
SELECT_REFEREE_STARTS = """
SELECT m.member_id, m.at, f.first_seen_at, o.paid_at, o.value_minor, v.minimum_minor
FROM unnest($2::text[], $3::timestamptz[]) AS m(member_id, at)
JOIN program_referrals r ON r.merchant_id = $1 AND r.referee_id = m.member_id
CROSS JOIN LATERAL (
    SELECT min(a.occurred_at) AS first_seen_at FROM program_applied_events a
    WHERE a.merchant_id = $1 AND a.member_id = m.member_id
) f
LEFT JOIN LATERAL (
    SELECT p.paid_at,
           (SELECT coalesce(sum(q.value::bigint), 0)::bigint FROM jsonb_each_text(p.qualifying) q)
               AS value_minor
    FROM program_orders p
    WHERE p.merchant_id = $1 AND p.order_id = r.first_order_id AND p.paid_at <= m.at
) o ON true
LEFT JOIN LATERAL (
    SELECT (d.document -> 'referrals' ->> 'min_first_order_minor')::bigint AS minimum_minor
    FROM program_versions d
    WHERE d.merchant_id = $1 AND d.effective_from <= o.paid_at
    ORDER BY d.effective_from DESC, d.version DESC LIMIT 1
) v ON true
"""

# The first sighting of each (kind, digest, member) link: primary-key reads.
SELECT_FIRST_SIGHTINGS = """
SELECT u.member_id, u.kind, max(l.first_seen_at) AS first_seen_at
FROM unnest($2::text[], $3::bytea[], $4::text[]) AS u(kind, digest, member_id)
CROSS JOIN LATERAL (
    SELECT first_seen_at FROM fraud_identity_links
    WHERE merchant_id = $1 AND kind = u.kind AND digest = u.digest AND member_id = u.member_id
    OFFSET 0) l
GROUP BY u.member_id, u.kind
"""

SELECT_POINTS_MEDIAN = """
SELECT points_24h_median FROM fraud_merchant_stats WHERE merchant_id = $1
"""

# $2: the first estimate, for a merchant without one; $3: the net steps; $4: the observations.
UPSERT_POINTS_MEDIAN = f"""
INSERT INTO fraud_merchant_stats AS s (merchant_id, points_24h_median, observations)
SELECT $1, $2::float8, $4::bigint
WHERE pg_try_advisory_xact_lock({STATS_LOCK_CLASS}, hashtext($1))
ON CONFLICT (merchant_id) DO UPDATE
SET points_24h_median = greatest(
        {MIN_MEDIAN_POINTS}::float8,
        s.points_24h_median * power({1 + MEDIAN_STEP}::float8, $3::int)),
    observations = s.observations + excluded.observations
"""


@dataclass(frozen=True)
class MemberLinks:
    """What a member's identifiers link them to: per kind of identifier, the most other members
    sharing one of theirs, and how many members their component holds (1: alone)."""

    sharing: dict[LinkKind, int]
    component_members: int = 1


@dataclass(frozen=True)
class RefereeStart:
    """How the event's member, as a referee, came to their first order."""

    hours_to_first_order: float = NOT_APPLICABLE
    first_order_over_minimum: float = NOT_APPLICABLE


# For each member: per kind, the most other members any one of their identifiers links (a
# nested loop of index reads per member), and the size of their component (NULL: in none).
SELECT_MEMBER_LINKS = """
SELECT m.member_id, s.kinds, s.others,
       (SELECT c.members FROM fraud_components c
        WHERE c.merchant_id = $1 AND c.component_id = (
            SELECT mc.component_id FROM fraud_member_components mc
            WHERE mc.merchant_id = $1 AND mc.member_id = m.member_id)) AS component_members
FROM unnest($2::text[]) AS m(member_id)
CROSS JOIN LATERAL (
    SELECT array_agg(k.kind ORDER BY k.kind) AS kinds,
           array_agg(k.others ORDER BY k.kind) AS others
    FROM (
        SELECT l.kind, max(i.members) - 1 AS others
        FROM (SELECT kind, digest FROM fraud_identity_links
              WHERE merchant_id = $1 AND member_id = m.member_id OFFSET 0) l
        CROSS JOIN LATERAL (
            SELECT members FROM fraud_identifiers
            WHERE merchant_id = $1 AND kind = l.kind AND digest = l.digest OFFSET 0) i
        GROUP BY l.kind
    ) k
) s
"""

# $2, $3: each pair of members (a referrer and a referee); the kinds of identifier they share.
SELECT_SHARED_KINDS = """
SELECT p.member_id, p.other_id, s.kind
FROM unnest($2::text[], $3::text[]) AS p(member_id, other_id)
CROSS JOIN LATERAL (
    SELECT DISTINCT a.kind FROM fraud_identity_links a
    JOIN fraud_identity_links b
      ON b.merchant_id = a.merchant_id AND b.kind = a.kind AND b.digest = a.digest
     AND b.member_id = p.other_id
    WHERE a.merchant_id = $1 AND a.member_id = p.member_id
    OFFSET 0) s
"""


async def load_histories(
    pg: PgConnection,
    merchant_id: str,
    wanted: Sequence[tuple[str, datetime, datetime]],
) -> dict[tuple[str, datetime], MemberHistory]:
    """Each (member, at, return window start)'s history up to `at`."""
    if not wanted:
        return {}
    rows = await pg.fetch(
        SELECT_MEMBER_HISTORIES,
        merchant_id,
        [member for member, _, _ in wanted],
        [at for _, at, _ in wanted],
        [start for _, _, start in wanted],
    )
    return {
        (row["member_id"], row["at"]): MemberHistory(
            first_seen_at=row["first_seen_at"],
            has_paid_order=row["has_paid_order"],
            orders_1h=row["orders_1h"],
            orders_24h=row["orders_24h"],
            orders_30d=row["orders_30d"],
            refunds_30d=row["refunds_30d"],
            orders_in_return_window=row["orders_in_return_window"],
            refunded_in_return_window=row["refunded_in_return_window"],
            referrals_24h=row["referrals_24h"],
            referrals_7d=row["referrals_7d"],
            referrals_30d=row["referrals_30d"],
            refunded_share_in_return_window=(
                row["refunded_in_return_window"] / row["orders_in_return_window"]
                if row["orders_in_return_window"]
                else 0.0
            ),
            hours_to_last_refund=hours_between(row["paid_at"], row["refunded_at"]),
            reviews_24h=row["reviews_24h"],
            decided_points_24h=row["decided_points_24h"],
        )
        for row in rows
    }


async def load_member_links(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, MemberLinks]:
    """What each member's identifiers link them to (one statement)."""
    rows = await pg.fetch(SELECT_MEMBER_LINKS, merchant_id, sorted(set(member_ids)))
    return {
        row["member_id"]: MemberLinks(
            sharing={
                LinkKind(kind): others
                for kind, others in zip(row["kinds"] or (), row["others"] or (), strict=True)
            },
            component_members=row["component_members"] or 1,
        )
        for row in rows
    }


async def load_shared_kinds(
    pg: PgConnection, merchant_id: str, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], frozenset[LinkKind]]:
    """The kinds of identifier each pair of members shares (one statement for all pairs)."""
    if not pairs:
        return {}
    rows = await pg.fetch(
        SELECT_SHARED_KINDS,
        merchant_id,
        [member for member, _ in pairs],
        [other for _, other in pairs],
    )
    shared: dict[tuple[str, str], set[LinkKind]] = {pair: set() for pair in pairs}
    for row in rows:
        shared[(row["member_id"], row["other_id"])].add(LinkKind(row["kind"]))
    return {pair: frozenset(kinds) for pair, kinds in shared.items()}


async def load_referee_starts(
    pg: PgConnection, merchant_id: str, wanted: Sequence[tuple[str, datetime]]
) -> dict[tuple[str, datetime], RefereeStart]:
    """Each referred (member, at)'s start as a referee, up to `at`; members not referred are
    left out."""
    if not wanted:
        return {}
    rows = await pg.fetch(
        SELECT_REFEREE_STARTS,
        merchant_id,
        [member for member, _ in wanted],
        [at for _, at in wanted],
    )
    return {
        (row["member_id"], row["at"]): RefereeStart(
            hours_to_first_order=hours_between(row["first_seen_at"], row["paid_at"]),
            first_order_over_minimum=(
                row["value_minor"] / row["minimum_minor"]
                if row["value_minor"] is not None and (row["minimum_minor"] or 0) > 0
                else NOT_APPLICABLE
            ),
        )
        for row in rows
    }


async def load_first_sightings(
    pg: PgConnection, merchant_id: str, seen: Sequence[SeenLink]
) -> dict[tuple[str, LinkKind], datetime]:
    """For each member and kind among `seen`, when the newest of those identifiers was first
    seen for the member (read after the links are recorded)."""
    if not seen:
        return {}
    rows = await pg.fetch(
        SELECT_FIRST_SIGHTINGS,
        merchant_id,
        [link.kind.value for link in seen],
        [link.digest for link in seen],
        [link.member_id for link in seen],
    )
    return {(row["member_id"], LinkKind(row["kind"])): row["first_seen_at"] for row in rows}


async def load_points_median(pg: PgConnection, merchant_id: str) -> float | None:
    """The merchant's running median of points earned in 24 hours (None before the first)."""
    median: float | None = await pg.fetchval(SELECT_POINTS_MEDIAN, merchant_id)
    return median


def median_steps(median: float, observations: Sequence[int]) -> int:
    """The net steps a round's observations move the running median: one up per observation
    above it, one down per observation below, bounded per round."""
    above = sum(1 for value in observations if value > median)
    below = sum(1 for value in observations if value < median)
    return max(-MAX_MEDIAN_STEPS_PER_ROUND, min(MAX_MEDIAN_STEPS_PER_ROUND, above - below))


async def record_points_observations(
    pg: PgConnection, merchant_id: str, median: float, observations: Sequence[int]
) -> None:
    """Move the merchant's running median by a round's observations, `median` being the
    estimate the round read (or its first one), unless another round holds the stats."""
    if observations:
        await pg.execute(
            UPSERT_POINTS_MEDIAN,
            merchant_id,
            max(MIN_MEDIAN_POINTS, median),
            median_steps(median, observations),
            len(observations),
        )
