"""Review cases: a member's held intents open one case (later ones join it), and a risk reviewer
decides it once: `clear`, `confirm` (optionally freezing the member) or `escalate` (kept open
for a senior reviewer). Who, when and why are recorded; a decided case cannot be decided again,
even by two reviewers racing (the decision is one conditional update of the case's row).
`decide_case` returns the held ledger entries; the program's `review.py` lets them go (clear)
or forfeits them (confirm) on the ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import CaseAlreadyDecided, MemberUnderReview, UnknownCase
from pointguard.fraud.links import linked_members

# (event type, payload) for the merchant's storefront, written to the outbox by the caller.
StorefrontEvent = tuple[str, Mapping[str, Any]]

OPEN_STATUSES = ("open", "escalated")

# Each of the members who is under review: their open case (if any) and whether frozen.
SELECT_REVIEW_STANDINGS = """
SELECT m.member_id, c.case_id, f.member_id IS NOT NULL AS frozen
FROM unnest($2::text[]) AS m(member_id)
LEFT JOIN fraud_cases c ON c.merchant_id = $1 AND c.member_id = m.member_id
                       AND c.status IN ('open', 'escalated')
LEFT JOIN fraud_frozen_members f ON f.merchant_id = $1 AND f.member_id = m.member_id
WHERE c.case_id IS NOT NULL OR f.member_id IS NOT NULL
"""

INSERT_CASES = """
INSERT INTO fraud_cases (merchant_id, member_id, opened_at)
SELECT $1, * FROM unnest($2::text[], $3::timestamptz[])
ON CONFLICT (merchant_id, member_id) WHERE status IN ('open', 'escalated') DO NOTHING
RETURNING member_id, case_id, opened_at
"""

CASE_COLUMNS = "case_id, member_id, status, opened_at, decided_at, decided_by, note, froze_member"

SELECT_CASE = f"""
SELECT {CASE_COLUMNS} FROM fraud_cases WHERE merchant_id = $1 AND case_id = $2
"""

SELECT_CASE_QUEUE = f"""
SELECT {CASE_COLUMNS}
FROM fraud_cases WHERE merchant_id = $1 AND status = ANY($2::text[])
ORDER BY opened_at, case_id LIMIT $3
"""

# $3: the statuses the case may be in; a decided case matches none of them.
UPDATE_CASE_DECISION = f"""
UPDATE fraud_cases SET status = $4, decided_at = $5, decided_by = $6, note = $7,
    froze_member = $8
WHERE merchant_id = $1 AND case_id = $2 AND status = ANY($3::text[])
RETURNING {CASE_COLUMNS}
"""

# The earns the guard cleared for a member: a confirmed case forfeits what they still have
# pending, as it does the held ones (an abuser's unreleased points are the abuse's too).
SELECT_MEMBERS_CLEARED_ENTRIES = """
SELECT ledger_entry_id FROM fraud_decisions
WHERE merchant_id = $1 AND member_id = $2 AND decision = 'clear' AND ledger_entry_id IS NOT NULL
ORDER BY ledger_entry_id
"""

SELECT_HELD_ENTRIES = """
SELECT ledger_entry_id FROM fraud_decisions
WHERE merchant_id = $1 AND case_id = $2 AND decision = 'hold' AND ledger_entry_id IS NOT NULL
ORDER BY ledger_entry_id
"""

SELECT_CASE_DECISIONS = """
SELECT intent_key, event_id, member_id, points, source, score, decided_by,
       reasons::text AS reasons, features::text AS features, ledger_entry_id, decided_at
FROM fraud_decisions WHERE merchant_id = $1 AND case_id = $2 ORDER BY decided_at, intent_key
"""

INSERT_FROZEN_MEMBER = """
INSERT INTO fraud_frozen_members (merchant_id, member_id, case_id, frozen_at)
VALUES ($1, $2, $3, $4) ON CONFLICT (merchant_id, member_id) DO NOTHING
"""


class CaseStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    CLEARED = "cleared"
    CONFIRMED = "confirmed"


class ReviewAction(StrEnum):
    CLEAR = "clear"
    CONFIRM = "confirm"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class Case:
    case_id: int
    member_id: str
    status: CaseStatus
    opened_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    froze_member: bool


class CaseDecision(NamedTuple):
    """`UPDATE_CASE_DECISION`'s parameters, in `$n` order."""

    merchant_id: str
    case_id: int
    from_statuses: list[str]
    status: str
    decided_at: datetime
    decided_by: str
    note: str | None
    froze_member: bool


@dataclass(frozen=True)
class HeldIntent:
    """A reward the guard held into a case, with why."""

    intent_key: str
    event_id: str
    member_id: str
    points: int
    source: str
    score: float
    decided_by: str
    reasons: list[str]
    features: dict[str, Any]
    ledger_entry_id: int | None
    decided_at: datetime


@dataclass(frozen=True)
class LinkedMemberStatus:
    """A member who shares identifiers with the case's member, and where they stand."""

    member_id: str
    shared: tuple[str, ...]  # kinds of identifier: card, device, address, email, phone, ...
    open_case_id: int | None
    frozen: bool


@dataclass(frozen=True)
class CaseDetail:
    case: Case
    held: list[HeldIntent]
    linked: list[LinkedMemberStatus]


@dataclass(frozen=True)
class CaseDecided:
    case: Case
    held_entry_ids: list[int]  # the earns the case held, for the ledger to let go or forfeit
    events: list[StorefrontEvent]


@dataclass(frozen=True)
class ReviewStanding:
    open_case_id: int | None
    frozen: bool


GOOD_STANDING = ReviewStanding(None, False)


async def load_review_standings(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, ReviewStanding]:
    """The members who have an open case or were frozen (the others are in good standing)."""
    rows = await pg.fetch(SELECT_REVIEW_STANDINGS, merchant_id, sorted(set(member_ids)))
    return {row["member_id"]: ReviewStanding(row["case_id"], row["frozen"]) for row in rows}


async def load_open_cases(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, int]:
    """The open (or escalated) case of each member who has one."""
    standings = await load_review_standings(pg, merchant_id, member_ids)
    return {
        member_id: standing.open_case_id
        for member_id, standing in standings.items()
        if standing.open_case_id is not None
    }


async def refuse_if_under_review(pg: PgConnection, merchant_id: str, member_id: str) -> None:
    """`MemberUnderReview` for a member with an open case or frozen by a reviewer: their points
    cannot be spent until the case is decided (checkouts call this before reserving)."""
    standing = (await load_review_standings(pg, merchant_id, [member_id])).get(member_id)
    if standing is None:
        return
    if standing.open_case_id is not None:
        raise MemberUnderReview(
            f"member {member_id!r} has open review case {standing.open_case_id}: points cannot"
            " be spent until a reviewer decides it",
            member_id=member_id,
            case_id=standing.open_case_id,
        )
    raise MemberUnderReview(
        f"member {member_id!r} was frozen by a reviewer", member_id=member_id, case_id=None
    )


async def open_cases(
    pg: PgConnection, merchant_id: str, held: Sequence[tuple[str, datetime]]
) -> tuple[dict[str, int], list[StorefrontEvent]]:
    """Each held member's open case, opened now (at their first hold's time) if they had none:
    `member.flagged` for each new one. One statement for the round's new cases."""
    cases = await load_open_cases(pg, merchant_id, [member for member, _ in held])
    first_hold: dict[str, datetime] = {}
    for member_id, at in sorted(held):
        if member_id not in cases:
            first_hold.setdefault(member_id, at)
    if not first_hold:
        return cases, []
    opened = await pg.fetch(INSERT_CASES, merchant_id, list(first_hold), list(first_hold.values()))
    events: list[StorefrontEvent] = []
    for row in opened:
        cases[row["member_id"]] = row["case_id"]
        events.append(
            ("member.flagged", _payload(row["member_id"], row["case_id"], row["opened_at"]))
        )
    raced = [member for member in first_hold if member not in cases]
    if raced:  # opened a moment ago by a concurrent round
        cases.update(await load_open_cases(pg, merchant_id, raced))
    return cases, events


async def load_case(pg: PgConnection, merchant_id: str, case_id: int) -> Case:
    row = await pg.fetchrow(SELECT_CASE, merchant_id, case_id)
    if row is None:
        raise UnknownCase(f"merchant {merchant_id!r} has no review case {case_id}")
    return _case(row)


async def case_detail(pg: PgConnection, merchant_id: str, case_id: int) -> CaseDetail:
    """What a reviewer sees of a case: its held rewards with reasons and features, and the
    members linked to its member through shared identifiers, with their status."""
    case = await load_case(pg, merchant_id, case_id)
    held = [
        HeldIntent(
            **{
                **dict(row),
                "reasons": msgspec.json.decode(row["reasons"]),
                "features": msgspec.json.decode(row["features"]),
            }
        )
        for row in await pg.fetch(SELECT_CASE_DECISIONS, merchant_id, case_id)
    ]
    linked = await linked_members(pg, merchant_id, case.member_id)
    others = [member.member_id for member in linked]
    standings = await load_review_standings(pg, merchant_id, others)
    return CaseDetail(
        case,
        held,
        [
            LinkedMemberStatus(
                m.member_id,
                tuple(kind.value for kind in m.shared),
                (standing := standings.get(m.member_id, GOOD_STANDING)).open_case_id,
                standing.frozen,
            )
            for m in linked
        ],
    )


async def case_queue(
    pg: PgConnection,
    merchant_id: str,
    statuses: Sequence[CaseStatus] = (CaseStatus.OPEN, CaseStatus.ESCALATED),
    *,
    limit: int = 50,
) -> list[Case]:
    """The cases in `statuses`, oldest first: the reviewers' queue."""
    rows = await pg.fetch(SELECT_CASE_QUEUE, merchant_id, [s.value for s in statuses], limit)
    return [_case(row) for row in rows]


async def decide_case(
    pg: PgConnection,
    merchant_id: str,
    case_id: int,
    action: ReviewAction,
    *,
    reviewer: str,
    note: str | None = None,
    freeze: bool = False,
    now: datetime,
) -> CaseDecided:
    """Decide an open case (see the module); `CaseAlreadyDecided` if it was decided before."""
    status = {
        ReviewAction.CLEAR: CaseStatus.CLEARED,
        ReviewAction.CONFIRM: CaseStatus.CONFIRMED,
        ReviewAction.ESCALATE: CaseStatus.ESCALATED,
    }[action]
    from_statuses = [CaseStatus.OPEN.value]
    if action != ReviewAction.ESCALATE:
        from_statuses.append(CaseStatus.ESCALATED.value)
    decision = CaseDecision(
        merchant_id=merchant_id,
        case_id=case_id,
        from_statuses=from_statuses,
        status=status.value,
        decided_at=now,
        decided_by=reviewer,
        note=note,
        froze_member=freeze and action == ReviewAction.CONFIRM,
    )
    decided = await pg.fetchrow(UPDATE_CASE_DECISION, *decision)
    if decided is None:
        case = await load_case(pg, merchant_id, case_id)  # UnknownCase if there is none
        raise CaseAlreadyDecided(
            f"review case {case_id} is already {case.status.value}"
            f" (by {case.decided_by} at {case.decided_at})",
            case_id=case_id,
            status=case.status.value,
        )
    case = _case(decided)
    member_id = case.member_id
    held = await pg.fetch(SELECT_HELD_ENTRIES, merchant_id, case_id)
    events: list[StorefrontEvent] = []
    if action == ReviewAction.CLEAR:
        events.append(("member.cleared", _payload(member_id, case_id, now)))
    elif decision.froze_member:
        await pg.execute(INSERT_FROZEN_MEMBER, merchant_id, member_id, case_id, now)
        events.append(("member.frozen", _payload(member_id, case_id, now)))
    return CaseDecided(case, [row["ledger_entry_id"] for row in held], events)


def _payload(member_id: str, case_id: int, at: datetime) -> Mapping[str, Any]:
    return {"member_id": member_id, "case_id": case_id, "at": at}


def _case(row: object) -> Case:
    values = dict(row)  # type: ignore[call-overload]
    return Case(**{**values, "status": CaseStatus(values["status"])})


async def cleared_entry_ids(pg: PgConnection, merchant_id: str, member_id: str) -> list[int]:
    """The ledger entries of the earns the guard cleared for the member (some may still be
    pending: the return window)."""
    rows = await pg.fetch(SELECT_MEMBERS_CLEARED_ENTRIES, merchant_id, member_id)
    return [row["ledger_entry_id"] for row in rows]
