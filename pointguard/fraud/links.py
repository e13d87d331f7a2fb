"""Identity links as stored: member M was seen with identifier (kind, digest). Recorded for
every event that carries signals, before the guard reads what members share.

Hard links (card, device, address) also join members into connected components, kept as they
are recorded (union-find on two tables: member → component, component → size), so that a
component's size is two primary-key reads, never a walk of the graph. Invariant: all members
on one hard identifier are in one component, and a component is named by one of its members.
A link new to its identifier joins its member's component with those of the identifier's
other members; the smaller component is relabelled into the larger (each member is relabelled
at most log2(n) times). The merchant's component lock orders concurrent rounds: a round that
reads the identifier's members after taking it sees every link committed before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pointguard.db import PgConnection
from pointguard.fraud.identity import HARD_LINKS, LinkKind

COMPONENTS_LOCK_CLASS = 0x66726463  # pg_advisory_xact_lock(class, hashtext(merchant)): "frdc"

# Links seen again keep their first and last sightings (rewritten only when they widen); a link
# new to its identifier adds one to the identifier's member count (`xmax = 0`: the row was
# inserted, not updated). Counts are updated in (kind, digest) order, one order for every
# writer. Returned: the new hard links on identifiers that now link two members or more (a
# member alone on all its identifiers is in no component: alone, size 1, nothing stored).
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
    RETURNING kind, digest, member_id, xmax = 0 AS inserted
), counted AS (
    INSERT INTO fraud_identifiers AS i (merchant_id, kind, digest, members)
    SELECT $1, kind, digest, count(*) FROM links WHERE inserted
    GROUP BY kind, digest ORDER BY kind, digest
    ON CONFLICT (merchant_id, kind, digest) DO UPDATE SET members = i.members + excluded.members
    RETURNING kind, digest, members
)
SELECT l.kind, l.digest, l.member_id FROM links l JOIN counted c USING (kind, digest)
WHERE l.inserted AND l.kind = ANY($7::text[]) AND c.members > 1
"""

LOCK_COMPONENTS = f"SELECT pg_advisory_xact_lock({COMPONENTS_LOCK_CLASS}, hashtext($1))"

# $2-$4: each identifier with new links and how many of its members to read (one more than its
# new ones: at least one member from before, if it has any); $5-$7: the new links themselves.
# Each member comes with its component and the component's size (NULL: in none yet).
SELECT_IDENTIFIER_COMPONENTS = """
WITH on_identifier AS (
    SELECT u.kind, u.digest, s.member_id
    FROM unnest($2::text[], $3::bytea[], $4::int[]) AS u(kind, digest, n)
    CROSS JOIN LATERAL (
        SELECT l.member_id FROM fraud_identity_links l
        WHERE l.merchant_id = $1 AND l.kind = u.kind AND l.digest = u.digest
        ORDER BY l.member_id LIMIT u.n
    ) s
    UNION
    SELECT * FROM unnest($5::text[], $6::bytea[], $7::text[])
)
SELECT o.kind, o.digest, o.member_id, mc.component_id, c.members
FROM on_identifier o
LEFT JOIN fraud_member_components mc ON mc.merchant_id = $1 AND mc.member_id = o.member_id
LEFT JOIN fraud_components c ON c.merchant_id = $1 AND c.component_id = mc.component_id
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
    """Store the links (one statement; the same link twice in a batch counts once, with the
    earliest and latest times), and join the components of the new hard links' members."""
    merged: dict[tuple[LinkKind, bytes, str], tuple[datetime, datetime]] = {}
    for link in seen:
        key = (link.kind, link.digest, link.member_id)
        first, last = merged.get(key, (link.at, link.at))
        merged[key] = (min(first, link.at), max(last, link.at))
    if not merged:
        return
    ordered = sorted(merged.items())  # one lock order for concurrent writers
    new_hard = await pg.fetch(
        UPSERT_IDENTITY_LINKS,
        merchant_id,
        [kind.value for (kind, _, _), _ in ordered],
        [digest for (_, digest, _), _ in ordered],
        [member for (_, _, member), _ in ordered],
        [first for _, (first, _) in ordered],
        [last for _, (_, last) in ordered],
        sorted(kind.value for kind in HARD_LINKS),
    )
    if new_hard:
        await _join_components(
            pg, merchant_id, [(r["kind"], r["digest"], r["member_id"]) for r in new_hard]
        )


async def _join_components(
    pg: PgConnection, merchant_id: str, new_links: Sequence[tuple[str, bytes, str]]
) -> None:
    """Join each new hard link's member with the other members on its identifier."""
    await pg.execute(LOCK_COMPONENTS, merchant_id)
    new_per_identifier = Counter((kind, digest) for kind, digest, _ in new_links)
    identifiers = sorted(new_per_identifier)
    rows = await pg.fetch(
        SELECT_IDENTIFIER_COMPONENTS,
        merchant_id,
        [kind for kind, _ in identifiers],
        [digest for _, digest in identifiers],
        [new_per_identifier[key] + 1 for key in identifiers],
        [kind for kind, _, _ in new_links],
        [digest for _, digest, _ in new_links],
        [member for _, _, member in new_links],
    )
    groups: dict[tuple[str, bytes], list[str]] = {key: [] for key in identifiers}
    known: dict[str, tuple[str, int]] = {}
    for row in rows:
        groups[(row["kind"], row["digest"])].append(row["member_id"])
        if row["component_id"] is not None:
            known[row["member_id"]] = (row["component_id"], row["members"])
    merges = plan_merges([sorted(group) for group in groups.values()], known)
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
