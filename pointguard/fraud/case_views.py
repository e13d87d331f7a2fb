"""What the reviewers' console reads of cases, set-wise: a page of the queue with each case's
held events counted (one statement whatever the page size), where members stand (open case,
frozen) with their balances, for any number of members in one statement each, and what the
merchant's features usually are (median and 90th percentile over its latest cleared
decisions), to read a held event's features against. Read only: deciding a case is
`cases.decide_case`, through `program.review.review_case`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pointguard.db import PgConnection
from pointguard.fraud.cases import (
    CASE_COLUMNS,
    Case,
    CaseStatus,
    ReviewStanding,
    load_review_standings,
)
from pointguard.fraud.features import NOT_APPLICABLE
from pointguard.ledger.balances import MemberBalances, members_balances

MAX_PAGE_CASES = 100
MAX_RANGE_DECISIONS = 1_000

# Each case with what it holds: the number of its held events, their points, the top score,
# and the rules (or the model) that held them, each once.
HELD_TOTALS = """count(d.intent_key) AS held_events,
       coalesce(sum(d.points), 0)::bigint AS held_points, max(d.score) AS top_score,
       array_remove(array_agg(DISTINCT d.decided_by ORDER BY d.decided_by), NULL) AS held_by"""
HELD_DECISIONS = """LEFT JOIN fraud_decisions d
  ON d.merchant_id = $1 AND d.case_id = c.case_id AND d.decision = 'hold'"""

# $3, $4: the last case of the previous page (NULL: the first page). The page's cases are
# chosen first (the queue index: merchant, status, opened_at), then their held events are
# counted: the aggregate reads only the page's cases' decisions.
SELECT_CASE_PAGE_BY_AGE = f"""
WITH c AS (
    SELECT {CASE_COLUMNS} FROM fraud_cases
    WHERE merchant_id = $1 AND status = ANY($2::text[])
      AND ($3::timestamptz IS NULL OR (opened_at, case_id) > ($3, $4::bigint))
    ORDER BY opened_at, case_id LIMIT $5
)
SELECT c.*, {HELD_TOTALS}
FROM c {HELD_DECISIONS}
GROUP BY c.case_id, c.member_id, c.status, c.opened_at, c.decided_at, c.decided_by, c.note,
         c.froze_member
ORDER BY c.opened_at, c.case_id
"""

# The highest score first, then the oldest; $6: the last case's top score. Every case in
# `statuses` is scored to be ordered: meant for the queue (open, escalated), not the history.
SELECT_CASE_PAGE_BY_SCORE = f"""
WITH scored AS (
    SELECT c.case_id, c.member_id, c.status, c.opened_at, c.decided_at, c.decided_by, c.note,
           c.froze_member, {HELD_TOTALS}
    FROM fraud_cases c {HELD_DECISIONS}
    WHERE c.merchant_id = $1 AND c.status = ANY($2::text[])
    GROUP BY c.merchant_id, c.case_id
)
SELECT * FROM scored
WHERE $3::timestamptz IS NULL
   OR (-coalesce(top_score, 0), opened_at, case_id) > (-$6::float8, $3, $4::bigint)
ORDER BY coalesce(top_score, 0) DESC, opened_at, case_id LIMIT $5
"""


# The merchant's latest cleared decisions that the model learned, newest first on the model's
# own index (merchant, learn_seq), at most $2; each numeric feature's median and 90th
# percentile over them (a field of an object-valued feature named "feature.field"), a value
# of $3 (NOT_APPLICABLE: a duration that does not apply) left out. `read`: how many decisions
# were read.
SELECT_FEATURE_RANGES = """
WITH latest AS (
    SELECT features FROM fraud_decisions
    WHERE merchant_id = $1 AND learn_seq IS NOT NULL AND decision = 'clear'
    ORDER BY learn_seq DESC LIMIT $2
), fields AS (  -- the features, and one level into those that are objects (history, sharing)
    SELECT f.key AS name, f.value FROM latest, jsonb_each(latest.features) AS f
    UNION ALL
    SELECT f.key || '.' || g.key, g.value
    FROM latest, jsonb_each(latest.features) AS f,
         jsonb_each(CASE WHEN jsonb_typeof(f.value) = 'object' THEN f.value ELSE '{}' END) AS g
), numbers AS (
    SELECT name, (value #>> '{}')::float8 AS value FROM fields
    WHERE jsonb_typeof(value) = 'number'
)
SELECT name, count(*) AS values_read,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY value) AS p90,
       (SELECT count(*) FROM latest) AS read
FROM numbers WHERE value <> $3::float8
GROUP BY name ORDER BY name
"""


class CaseOrder(StrEnum):
    OLDEST_FIRST = "oldest_first"
    RISKIEST_FIRST = "riskiest_first"  # the highest top score first, then the oldest


class MemberStatus(StrEnum):
    ACTIVE = "active"
    UNDER_REVIEW = "under_review"  # an open (or escalated) case: points cannot be spent
    FROZEN = "frozen"  # a reviewer froze the member: every later earn is held


@dataclass(frozen=True)
class CaseSummary:
    """A case with what it holds: how many events, how many points, the highest score, and
    what held them (rule names, or the model's)."""

    case: Case
    held_events: int
    held_points: int
    top_score: float | None
    held_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueuePosition:
    """A case's place in a queue's order: a page starts after it."""

    opened_at: datetime
    case_id: int
    top_score: float = 0.0  # riskiest first only

    @staticmethod
    def of(summary: CaseSummary) -> QueuePosition:
        case = summary.case
        return QueuePosition(case.opened_at, case.case_id, summary.top_score or 0.0)


@dataclass(frozen=True)
class MemberStanding:
    member_id: str
    status: MemberStatus
    open_case_id: int | None
    balances: MemberBalances


@dataclass(frozen=True)
class FeatureRange:
    """A numeric feature's usual values at a merchant: over `values` cleared decisions."""

    name: str
    values: int
    median: float
    p90: float


@dataclass(frozen=True)
class FeatureRanges:
    decisions: int  # the cleared decisions read
    features: list[FeatureRange]


def member_status(standing: ReviewStanding | None) -> MemberStatus:
    """Frozen outranks an open case: a frozen member's later holds open new cases."""
    if standing is None:
        return MemberStatus.ACTIVE
    if standing.frozen:
        return MemberStatus.FROZEN
    return MemberStatus.UNDER_REVIEW if standing.open_case_id is not None else MemberStatus.ACTIVE


async def case_page(
    pg: PgConnection,
    merchant_id: str,
    statuses: Sequence[CaseStatus],
    *,
    order: CaseOrder = CaseOrder.OLDEST_FIRST,
    limit: int,
    after: QueuePosition | None = None,
) -> list[CaseSummary]:
    """Up to `limit` cases in `statuses`, in `order`, after the case at `after`; one
    statement."""
    if not 1 <= limit <= MAX_PAGE_CASES + 1:
        raise ValueError(f"a page has 1 to {MAX_PAGE_CASES + 1} cases, not {limit}")
    wanted = [s.value for s in statuses]
    at = (None, None) if after is None else (after.opened_at, after.case_id)
    if order == CaseOrder.OLDEST_FIRST:
        rows = await pg.fetch(SELECT_CASE_PAGE_BY_AGE, merchant_id, wanted, *at, limit)
    else:
        score = None if after is None else after.top_score
        rows = await pg.fetch(SELECT_CASE_PAGE_BY_SCORE, merchant_id, wanted, *at, limit, score)
    return [
        CaseSummary(
            Case(
                case_id=row["case_id"],
                member_id=row["member_id"],
                status=CaseStatus(row["status"]),
                opened_at=row["opened_at"],
                decided_at=row["decided_at"],
                decided_by=row["decided_by"],
                note=row["note"],
                froze_member=row["froze_member"],
            ),
            held_events=row["held_events"],
            held_points=row["held_points"],
            top_score=row["top_score"],
            held_by=tuple(row["held_by"]),
        )
        for row in rows
    ]


async def member_standings(
    pg: PgConnection, merchant_id: str, member_ids: Sequence[str]
) -> dict[str, MemberStanding]:
    """Each member's review status and balances: two statements for any number of members."""
    standings = await load_review_standings(pg, merchant_id, member_ids)
    balances = await members_balances(pg, merchant_id, member_ids)
    found: dict[str, MemberStanding] = {}
    for member_id in member_ids:
        standing = standings.get(member_id)
        found[member_id] = MemberStanding(
            member_id,
            member_status(standing),
            None if standing is None else standing.open_case_id,
            balances.get(member_id, MemberBalances()),
        )
    return found


async def feature_ranges(pg: PgConnection, merchant_id: str, decisions: int) -> FeatureRanges:
    """Each numeric feature's median and 90th percentile over the merchant's latest
    `decisions` cleared decisions that the model learned; one statement."""
    if not 1 <= decisions <= MAX_RANGE_DECISIONS:
        raise ValueError(f"feature ranges read 1 to {MAX_RANGE_DECISIONS} decisions")
    rows = await pg.fetch(SELECT_FEATURE_RANGES, merchant_id, decisions, NOT_APPLICABLE)
    return FeatureRanges(
        decisions=rows[0]["read"] if rows else 0,
        features=[
            FeatureRange(row["name"], row["values_read"], row["median"], row["p90"]) for row in rows
        ],
    )
