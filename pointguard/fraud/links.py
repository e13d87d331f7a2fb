"""Identity links as stored: member M was seen with identifier (kind, digest). Recorded for
every event that carries signals, before the guard reads what members share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.identity import LinkKind

# Links seen again keep their first and last sightings (rewritten only when they widen); a link
# new to its identifier adds one to the identifier's member count (`xmax = 0`: the row was
# inserted, not updated). Counts are updated in (kind, digest) order, one order for every
# writer.
UPSERT_IDENTITY_LINKS = """
WITH links AS (
    INSERT INTO fraud_identity_links AS l
        (merchant_id, kind, digest, member_id, first_seen_at, last_seen_at)
    SELECT $1, u.kind, u.digest, u.member_id, u.first_seen_at, u.last_seen_at
    FROM unnest($2::text[], $3::bytea[], $4::text[], $5::timestamptz[], $6::timestamptz[])
         AS u(kind, digest, member_id, first_seen_at, last_seen_at)
    ON CONFLICT (merchant_id, kind, digest, member_id) DO UPDATE
    SET first_seen_at = least(l.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(l.last_seen_at, excluded.last_seen_at)
    WHERE excluded.first_seen_at < l.first_seen_at OR excluded.last_seen_at > l.last_seen_at
    RETURNING kind, digest, xmax = 0 AS inserted
)
INSERT INTO fraud_identifiers AS i (merchant_id, kind, digest, members)
SELECT $1, kind, digest, count(*) FROM links WHERE inserted
GROUP BY kind, digest ORDER BY kind, digest
ON CONFLICT (merchant_id, kind, digest) DO UPDATE SET members = i.members + excluded.members
"""

SELECT_LINKED_MEMBERS = """
SELECT o.member_id, array_agg(DISTINCT o.kind ORDER BY o.kind) AS kinds
FROM fraud_identity_links l
JOIN fraud_identity_links o
  ON o.merchant_id = l.merchant_id AND o.kind = l.kind AND o.digest = l.digest
 AND o.member_id <> l.member_id
WHERE l.merchant_id = $1 AND l.member_id = $2
GROUP BY o.member_id
ORDER BY count(DISTINCT o.kind) DESC, o.member_id
LIMIT $3
"""


@dataclass(frozen=True)
class SeenLink:
    kind: LinkKind
    digest: bytes
    member_id: str
    at: datetime


@dataclass(frozen=True)
class LinkedMember:
    member_id: str
    shared: tuple[LinkKind, ...]


async def record_links(pg: PgConnection, merchant_id: str, seen: Sequence[SeenLink]) -> None:
    """Store the links (one statement; the same link twice in a batch counts once, with the
    earliest and latest times)."""
    merged: dict[tuple[LinkKind, bytes, str], tuple[datetime, datetime]] = {}
    for link in seen:
        key = (link.kind, link.digest, link.member_id)
        first, last = merged.get(key, (link.at, link.at))
        merged[key] = (min(first, link.at), max(last, link.at))
    if not merged:
        return
    ordered = sorted(merged.items())  # one lock order for concurrent writers
    await pg.execute(
        UPSERT_IDENTITY_LINKS,
        merchant_id,
        [kind.value for (kind, _, _), _ in ordered],
        [digest for (_, digest, _), _ in ordered],
        [member for (_, _, member), _ in ordered],
        [first for _, (first, _) in ordered],
        [last for _, (_, last) in ordered],
    )


async def linked_members(
    pg: PgConnection, merchant_id: str, member_id: str, *, limit: int = 50
) -> list[LinkedMember]:
    """The members who share any identifier with `member_id`, most shared kinds first."""
    rows = await pg.fetch(SELECT_LINKED_MEMBERS, merchant_id, member_id, limit)
    return [LinkedMember(r["member_id"], tuple(LinkKind(k) for k in r["kinds"])) for r in rows]
