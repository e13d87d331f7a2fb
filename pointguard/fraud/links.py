"""Identity links as stored: member M was seen with identifier (kind, digest). Recorded for
every event that carries signals, before the guard reads what members share.

Hard links (card, device, address) also join members into connected components, kept as they
are recorded (union-find on two tables: member → component, component → size), so that a
component's size is two primary-key reads, never a walk of the graph. Invariant: all members
on one hard identifier are in one component, and a component is named by one of its members.
A link new to its identifier joins its member's component with those of the identifier's
other members; the smaller component is relabelled into the larger (each member is relabelled
at most log2(n) times). The merchant's model lock (`model_store.py`), which every round takes
first, orders concurrent rounds: a round reads the identifiers' members after every link
committed before it. One statement records a round's links and reads what their components
need; a second writes the merges, if any."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pointguard.db import PgConnection
from pointguard.fraud.identity import HARD_LINKS, LinkKind

LAST_SEEN_STEP = "1 day"  # how far a link's last sighting moves before it is rewritten

# Links seen again keep their first and last sightings, rewritten only when the first moves
# earlier or the last more than `LAST_SEEN_STEP` later (nothing reads `last_seen_at` finer than
# a day, so a returning customer's links cost an index probe each, not a new row version). A
# link new to its identifier adds one to the identifier's member count (`xmax = 0`: the row was
# inserted, not updated); counts are updated in (kind, digest) order, one order for every
# writer. Returned, for each identifier with new hard links that now links two members or
# more: its new members and its first member from before (the statement's snapshot does not
# see its own inserts; all of an identifier's earlier members are in one component), each with
# its component and the component's size (NULL: in none yet). A member alone on all its
# identifiers is in no component: size 1, nothing stored. No CTE is joined with another: a
# prepared statement's generic plan (ten rows guessed per array) nests such a join, one CTE
# scanned for each row of the other.
UPSERT_IDENTITY_LINKS = f"""
WITH links AS (
    INSERT INTO fraud_identity_links AS l
        (merchant_id, kind, digest, member_id, first_seen_at, last_seen_at)
    SELECT $1, u.kind, u.digest, u.member_id, u.first_seen_at, u.last_seen_at
    FROM unnest($2::text[], $3::bytea[], $4::text[], $5::timestamptz[], $6::timestamptz[])
         AS u(kind, digest, member_id, first_seen_at, last_seen_at)
    ON CONFLICT (merchant_id, kind, digest, member_id) DO UPDATE
    SET first_seen_at = least(l.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(l.last_seen_at, excluded.last_seen_at)
    WHERE excluded.first_seen_at < l.first_seen_at
       OR excluded.last_seen_at > l.last_seen_at + interval '{LAST_SEEN_STEP}'
    RETURNING kind, digest, member_id, xmax = 0 AS inserted
), new_on_identifier AS (
    SELECT kind, digest, array_agg(member_id) AS members FROM links WHERE inserted
    GROUP BY kind, digest
), counted AS (
    INSERT INTO fraud_identifiers AS i (merchant_id, kind, digest, members)
    SELECT $1, kind, digest, cardinality(members) FROM new_on_identifier ORDER BY kind, digest
    ON CONFLICT (merchant_id, kind, digest) DO UPDATE SET members = i.members + excluded.members
), linking AS (
    SELECT n.kind, n.digest, array_remove(n.members || before.member_id, NULL) AS members
    FROM new_on_identifier n
    LEFT JOIN LATERAL (
        SELECT l.member_id FROM fraud_identity_links l
        WHERE l.merchant_id = $1 AND l.kind = n.kind AND l.digest = n.digest
        ORDER BY l.member_id LIMIT 1
    ) before ON true
    WHERE n.kind = ANY($7::text[]) AND (cardinality(n.members) > 1 OR before.member_id IS NOT NULL)
)
SELECT linking.kind, linking.digest, o.member_id, mc.component_id,
       (SELECT c.members FROM fraud_components c
        WHERE c.merchant_id = $1 AND c.component_id = mc.component_id) AS members
FROM linking, unnest(linking.members) AS o(member_id)
LEFT JOIN LATERAL (
    SELECT component_id FROM fraud_member_components
    WHERE merchant_id = $1 AND member_id = o.member_id OFFSET 0
) mc ON true
"""

# $2, $3: absorbed components and their roots; $4, $5: members joining a component for the
# first time; $6, $7: the roots' new sizes.
WRITE_COMPONENT_MERGES = """
WITH relabelled AS (
    UPDATE fraud_member_components mc SET component_id = u.root
    FROM unnest($2::text[], $3::text[]) AS u(absorbed, root)
    WHERE mc.merchant_id = $1 AND mc.component_id = u.absorbed
), dropped AS (
    DELETE FROM fraud_components c USING unnest($2::text[]) AS d(absorbed)
    WHERE c.merchant_id = $1 AND c.component_id = d.absorbed
), joined AS (
    INSERT INTO fraud_member_components (merchant_id, member_id, component_id)
    SELECT $1, * FROM unnest($4::text[], $5::text[])
)
INSERT INTO fraud_components AS c (merchant_id, component_id, members)
SELECT $1, * FROM unnest($6::text[], $7::int[])
ON CONFLICT (merchant_id, component_id) DO UPDATE SET members = excluded.members
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


@dataclass(frozen=True)
class ComponentMerges:
    """What a round's new hard links change in the components."""

    absorbed: dict[str, str]  # a component relabelled into another: absorbed → root
    joined: dict[str, str]  # a member in no component before → its component
    sizes: dict[str, int]  # each root's new size


def plan_merges(
    groups: Sequence[Sequence[str]], known: Mapping[str, tuple[str, int]]
) -> ComponentMerges:
    """Join the members of each group (the members read on one identifier) into one component.
    `known` gives the members already in a component, with its size; any other member starts
    alone, in a component named after it. Of two components, the larger absorbs the smaller
    (ties: the lesser name absorbs), so that relabelling stays cheap. Pure."""
    parent: dict[str, str] = {}
    size: dict[str, int] = {}
    for component, members in known.values():
        parent[component], size[component] = component, members
    for group in groups:
        for member in group:
            if member not in known and member not in parent:
                parent[member], size[member] = member, 1

    def root(component: str) -> str:
        while parent[component] != component:
            parent[component] = parent[parent[component]]
            component = parent[component]
        return component

    def component_of(member: str) -> str:
        return known[member][0] if member in known else member

    changed: set[str] = set()
    for group in groups:
        for member in group[1:]:
            a, b = root(component_of(group[0])), root(component_of(member))
            if a == b:
                continue
            keep, drop = (a, b) if (size[a], b) > (size[b], a) else (b, a)
            parent[drop], size[keep] = keep, size[keep] + size[drop]
            changed.add(keep)
    absorbed = {c: root(c) for c in parent if root(c) != c}
    joined = {m: root(m) for group in groups for m in group if m not in known}
    roots = changed | set(joined.values())
    return ComponentMerges(
        absorbed={c: r for c, r in absorbed.items() if c not in joined},
        joined=joined,
        sizes={r: size[r] for r in roots if parent[r] == r},
    )


async def record_links(pg: PgConnection, merchant_id: str, seen: Sequence[SeenLink]) -> None:
    """Store the links (the same link twice in a batch counts once, with the earliest and
    latest times), and join the components of the new hard links' members. Call under the
    merchant's model lock (`model_store.py`), which orders concurrent rounds: a round reads the
    identifiers' members after every round committed before it."""
    merged: dict[tuple[LinkKind, bytes, str], tuple[datetime, datetime]] = {}
    for link in seen:
        key = (link.kind, link.digest, link.member_id)
        first, last = merged.get(key, (link.at, link.at))
        merged[key] = (min(first, link.at), max(last, link.at))
    if not merged:
        return
    ordered = sorted(merged.items())  # one lock order for concurrent writers
    rows = await pg.fetch(
        UPSERT_IDENTITY_LINKS,
        merchant_id,
        [kind.value for (kind, _, _), _ in ordered],
        [digest for (_, digest, _), _ in ordered],
        [member for (_, _, member), _ in ordered],
        [first for _, (first, _) in ordered],
        [last for _, (_, last) in ordered],
        sorted(kind.value for kind in HARD_LINKS),
    )
    if rows:
        await _join_components(pg, merchant_id, rows)


async def _join_components(pg: PgConnection, merchant_id: str, rows: Sequence[Any]) -> None:
    """Join the members read on each identifier with new hard links (`UPSERT_IDENTITY_LINKS`'s
    rows) into one component."""
    groups: dict[tuple[str, bytes], list[str]] = {}
    known: dict[str, tuple[str, int]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["digest"]), []).append(row["member_id"])
        if row["component_id"] is not None:
            known[row["member_id"]] = (row["component_id"], row["members"])
    merges = plan_merges([sorted(groups[key]) for key in sorted(groups)], known)
    absorbed, joined, sizes = (
        sorted(m.items()) for m in (merges.absorbed, merges.joined, merges.sizes)
    )
    await pg.execute(
        WRITE_COMPONENT_MERGES,
        merchant_id,
        [component for component, _ in absorbed],
        [root for _, root in absorbed],
        [member for member, _ in joined],
        [component for _, component in joined],
        [root for root, _ in sizes],
        [members for _, members in sizes],
    )


async def linked_members(
    pg: PgConnection, merchant_id: str, member_id: str, *, limit: int = 50
) -> list[LinkedMember]:
    """The members who share any identifier with `member_id`, most shared kinds first."""
    rows = await pg.fetch(SELECT_LINKED_MEMBERS, merchant_id, member_id, limit)
    return [LinkedMember(r["member_id"], tuple(LinkKind(k) for k in r["kinds"])) for r in rows]
