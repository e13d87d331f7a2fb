"""Loading what the guard's features read, set-wise for a round of events: each member's recent
activity (from the program's record of applied events and referrals), how many other members
share each of their identifiers, and what a referrer and a referee share. Every read is an
index range, and how many members an identifier links is a counter kept as links are added
(`links.py`), never a count over a busy identifier's links."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.features import MemberHistory
from pointguard.fraud.identity import LinkKind

# $2, $3, $4: each member, the time of the event decided, and where the return window starts.
# One lateral read per source, each an index range of the member's own rows.
SELECT_MEMBER_HISTORIES = """
SELECT m.member_id, m.at, e.first_seen_at, e.orders_1h, e.orders_24h, e.orders_30d,
       e.refunds_30d, o.orders_in_return_window, o.refunded_in_return_window,
       r.referrals_24h, r.referrals_7d, r.referrals_30d
FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS m(member_id, at, window_start)
CROSS JOIN LATERAL (
    SELECT (SELECT min(f.occurred_at) FROM program_applied_events f
            WHERE f.merchant_id = $1 AND f.member_id = m.member_id) AS first_seen_at,
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
"""


# For each member and kind, the most other members any one of their identifiers links: a
# nested loop of index reads per member, whatever the statistics of young tables say.
SELECT_MEMBERS_SHARING = """
SELECT m.member_id, l.kind, max(i.members) - 1 AS others
FROM unnest($2::text[]) AS m(member_id)
CROSS JOIN LATERAL (
    SELECT kind, digest FROM fraud_identity_links
    WHERE merchant_id = $1 AND member_id = m.member_id) l
CROSS JOIN LATERAL (
    SELECT members FROM fraud_identifiers
    WHERE merchant_id = $1 AND kind = l.kind AND digest = l.digest) i
GROUP BY m.member_id, l.kind
"""

SELECT_SHARED_KINDS = """
SELECT DISTINCT a.kind FROM fraud_identity_links a
JOIN fraud_identity_links b
  ON b.merchant_id = a.merchant_id AND b.kind = a.kind AND b.digest = a.digest
 AND b.member_id = $3
WHERE a.merchant_id = $1 AND a.member_id = $2
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
            orders_1h=row["orders_1h"],
            orders_24h=row["orders_24h"],
            orders_30d=row["orders_30d"],
            refunds_30d=row["refunds_30d"],
            orders_in_return_window=row["orders_in_return_window"],
            refunded_in_return_window=row["refunded_in_return_window"],
            referrals_24h=row["referrals_24h"],
            referrals_7d=row["referrals_7d"],
            referrals_30d=row["referrals_30d"],
        )
        for row in rows
    }


async def load_sharing(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, dict[LinkKind, int]]:
    """For each member, per kind of identifier, the most other members sharing one of theirs."""
    sharing: dict[str, dict[LinkKind, int]] = {member: {} for member in member_ids}
    for row in await pg.fetch(SELECT_MEMBERS_SHARING, merchant_id, sorted(set(member_ids))):
        sharing[row["member_id"]][LinkKind(row["kind"])] = row["others"]
    return sharing


async def load_shared_kinds(
    pg: PgConnection, merchant_id: str, member_id: str, other_id: str
) -> frozenset[LinkKind]:
    """The kinds of identifier two members share."""
    rows = await pg.fetch(SELECT_SHARED_KINDS, merchant_id, member_id, other_id)
    return frozenset(LinkKind(row["kind"]) for row in rows)
