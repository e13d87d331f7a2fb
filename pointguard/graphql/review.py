"""Risk reviewers' cases: the queue (`reviewCases`), one case with what a reviewer decides by
(`reviewCase`: held events, reasons, features, linked members), what the merchant's features
usually are (`reviewFeatureRanges`), and the decisions
(`clearCase`, `confirmCase`, `escalateCase`), which `program.review.review_case` carries to the
ledger in the mutation's transaction. Reviewer or admin API keys only; the key's name is the
`decidedBy` of the audit trail. A case id this merchant does not have, another merchant's
included, is `NotFound`; a decided case is `CaseAlreadyDecided` and stays as it was.

The queue is read set-wise in one snapshot: the page with its counts, then every member's
status and balances, a fixed number of statements whatever the page size."""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pointguard.db import PgConnection
from pointguard.errors import NotFound, QueryRefused
from pointguard.fraud.case_views import (
    MAX_PAGE_CASES,
    MAX_RANGE_DECISIONS,
    CaseOrder,
    CaseSummary,
    MemberStanding,
    MemberStatus,
    QueuePosition,
    case_page,
    feature_ranges,
    member_standings,
)
from pointguard.fraud.cases import Case, CaseDetail, CaseStatus, ReviewAction, case_detail
from pointguard.fraud.redemption_guard import RefusedRedemption, case_refused_redemptions
from pointguard.graphql.auth import Role
from pointguard.graphql.context import RequestContext
from pointguard.graphql.customer import Balance
from pointguard.graphql.problems import CaseAlreadyDecided, or_problem
from pointguard.graphql.problems import NotFound as NotFoundProblem
from pointguard.program import review as reviewing

Context = Info[RequestContext, None]

MAX_NOTE_CHARS = 2_000
QUEUE_STATUSES = (CaseStatus.OPEN, CaseStatus.ESCALATED)

strawberry.enum(
    CaseOrder,
    description="OLDEST_FIRST; RISKIEST_FIRST: the highest top score first, then the oldest"
    " (for the queue: it scores every case of the statuses asked for).",
)
strawberry.enum(
    MemberStatus,
    description="ACTIVE; UNDER_REVIEW: an open case, points cannot be spent; FROZEN by a"
    " reviewer: every later earn is held and checkouts are refused.",
)


@strawberry.type(description="A member as a reviewer sees them.")
class ReviewedMember:
    id: strawberry.ID
    status: MemberStatus
    open_case_id: strawberry.ID | None
    balance: Balance


@strawberry.type(description="One feature the guard read for an event, as it stored it.")
class Feature:
    name: str
    value: JSON


@strawberry.type(description="A reward the guard held into the case, and why.")
class HeldEvent:
    intent_key: str = strawberry.field(description="The reward's ledger key.")
    event_id: strawberry.ID = strawberry.field(description="The webhook event that earned it.")
    points: int
    source: str = strawberry.field(description="What earned it: earning:order, referral:…")
    score: float
    decided_by: str = strawberry.field(description="The rule, or the model, that held it.")
    reasons: list[str] = strawberry.field(description="Why, in words.")
    decided_at: datetime
    ledger_entry_id: strawberry.ID | None = strawberry.field(
        description="The pending earn on the ledger (none until posted)."
    )
    features: list[Feature] = strawberry.field(description="What the guard read, by name.")


@strawberry.type(description="A checkout the guard refused into the case, and why.")
class RefusedCheckout:
    idempotency_key: str = strawberry.field(description="The checkout's key.")
    reward_id: strawberry.ID
    reasons: list[str]
    refused_at: datetime


@strawberry.type(description="A member sharing identifiers with the case's member.")
class LinkedMember:
    member: ReviewedMember
    shared_identifiers: list[str] = strawberry.field(
        description="The kinds shared: card, device, address, email, phone, ip_prefix, …"
    )


@strawberry.type(description="A review case in the queue, with what it holds.")
class ReviewCaseSummary:
    id: strawberry.ID
    member: ReviewedMember
    status: CaseStatus
    opened_at: datetime
    decided_at: datetime | None
    decided_by: str | None = strawberry.field(description="The name of the deciding key.")
    note: str | None
    froze_member: bool
    held_event_count: int
    held_points: int = strawberry.field(description="The points of its held events.")
    top_score: float | None = strawberry.field(description="The highest of their scores.")
    held_by: list[str] = strawberry.field(
        description="The rules (or the model) that held its events, each once: self_referral, …"
    )


@strawberry.type(description="A review case with everything a reviewer decides by.")
class ReviewCase(ReviewCaseSummary):
    held_events: list[HeldEvent]
    refused_checkouts: list[RefusedCheckout] = strawberry.field(
        description="Checkouts refused because the member is linked to a flagged member."
    )
    reasons: list[str] = strawberry.field(
        description="Its held events' and refused checkouts' reasons, once each."
    )
    linked_members: list[LinkedMember] = strawberry.field(
        description="Members sharing identifiers with this one, most shared kinds first."
    )


@strawberry.type
class ReviewCasePage:
    cases: list[ReviewCaseSummary]
    next_cursor: str | None = strawberry.field(description="`after` for the next page.")


@strawberry.type(description="A numeric feature's usual values at this merchant.")
class FeatureRange:
    name: str
    values: int = strawberry.field(description="How many of the decisions read had a value.")
    median: float
    p90: float = strawberry.field(description="The 90th percentile: nine in ten are at most.")


@strawberry.type(description="What the merchant's features usually are.")
class FeatureRanges:
    decisions: int = strawberry.field(description="How many cleared decisions were read.")
    features: list[FeatureRange]


ReviewCaseResult = Annotated[ReviewCase | NotFoundProblem, strawberry.union("ReviewCaseResult")]
CaseDecisionResult = Annotated[
    ReviewCase | CaseAlreadyDecided | NotFoundProblem, strawberry.union("CaseDecisionResult")
]


async def review_cases(
    info: Context,
    status: Annotated[
        list[CaseStatus] | None,
        strawberry.argument(description="Default: OPEN and ESCALATED, the queue."),
    ] = None,
    first: int = 20,
    after: str | None = None,
    order: CaseOrder = CaseOrder.OLDEST_FIRST,
) -> ReviewCasePage:
    """Review cases, a page at a time (reviewer or admin keys)."""
    merchant_id, _ = _reviewer(info)
    if not 1 <= first <= MAX_PAGE_CASES:
        raise QueryRefused(f"reviewCases(first:) must be 1 to {MAX_PAGE_CASES}, not {first}")
    statuses = QUEUE_STATUSES if status is None else tuple(dict.fromkeys(status))
    position = _position(after, order)

    async def load(pg: PgConnection) -> tuple[list[CaseSummary], dict[str, MemberStanding]]:
        page = await case_page(
            pg, merchant_id, statuses, order=order, limit=first + 1, after=position
        )
        members = [summary.case.member_id for summary in page[:first]]
        return page, await member_standings(pg, merchant_id, members)

    page, standings = await info.context.read(load)
    last = page[first - 1] if len(page) > first else None
    return ReviewCasePage(
        cases=[
            ReviewCaseSummary(
                **_case_fields(s.case, standings),
                held_event_count=s.held_events,
                held_points=s.held_points,
                top_score=s.top_score,
                held_by=list(s.held_by),
            )
            for s in page[:first]
        ],
        next_cursor=None if last is None else _cursor(order, QueuePosition.of(last)),
    )


async def review_case(info: Context, id: strawberry.ID) -> ReviewCaseResult:
    """One review case with its held events, reasons and linked members (reviewer or admin
    keys); `NotFound` for an id this merchant does not have."""
    merchant_id, _ = _reviewer(info)
    return await or_problem(  # type: ignore[return-value]
        lambda: info.context.read(lambda pg: _load_case(pg, merchant_id, _case_id(id)))
    )


async def review_feature_ranges(info: Context, decisions: int = 500) -> FeatureRanges:
    """Each numeric feature's median and 90th percentile over the merchant's latest `decisions`
    (1 to 1,000) cleared decisions that the model learned: what is usual here, to read a held
    event's features against. A field of a feature that is an object is named
    `feature.field` (`history.orders_24h`); a value that does not apply (-1) is left out
    (reviewer or admin keys)."""
    merchant_id, _ = _reviewer(info)
    if not 1 <= decisions <= MAX_RANGE_DECISIONS:
        raise QueryRefused(
            f"reviewFeatureRanges(decisions:) must be 1 to {MAX_RANGE_DECISIONS}, not {decisions}"
        )
    found = await info.context.read(lambda pg: feature_ranges(pg, merchant_id, decisions))
    return FeatureRanges(
        decisions=found.decisions,
        features=[
            FeatureRange(name=f.name, values=f.values, median=f.median, p90=f.p90)
            for f in found.features
        ],
    )


async def clear_case(
    info: Context, id: strawberry.ID, note: str | None = None
) -> CaseDecisionResult:
    """Clear the case: its held points are let go (available now if their return window has
    passed, else when it does) and the storefront hears `member.cleared`."""
    return await _decide(info, id, ReviewAction.CLEAR, note)


async def confirm_case(
    info: Context,
    id: strawberry.ID,
    freeze_member: bool = False,
    void_referral_rewards: bool = False,
    note: str | None = None,
) -> CaseDecisionResult:
    """Confirm the case as abuse: the member's pending points (held, and cleared but not yet
    released) are forfeited; `freezeMember` freezes the member (later earns held, checkouts
    refused); `voidReferralRewards` takes back what the member's referrals earned them."""
    return await _decide(
        info,
        id,
        ReviewAction.CONFIRM,
        note,
        freeze=freeze_member,
        void_referrals=void_referral_rewards,
    )


async def escalate_case(
    info: Context, id: strawberry.ID, note: str | None = None
) -> CaseDecisionResult:
    """Escalate an open case to a senior reviewer: it stays open and its points stay held."""
    return await _decide(info, id, ReviewAction.ESCALATE, note)


async def _decide(
    info: Context,
    id: strawberry.ID,
    action: ReviewAction,
    note: str | None,
    *,
    freeze: bool = False,
    void_referrals: bool = False,
) -> CaseDecisionResult:
    merchant_id, reviewer = _reviewer(info)
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise QueryRefused(f"a note has at most {MAX_NOTE_CHARS} characters")

    async def work(pg: PgConnection) -> ReviewCase:
        case_id = _case_id(id)
        await reviewing.review_case(
            pg,
            merchant_id,
            case_id,
            action,
            reviewer=reviewer,
            note=note,
            freeze=freeze,
            void_referrals=void_referrals,
            now=info.context.now,
        )
        return await _load_case(pg, merchant_id, case_id)

    return await or_problem(lambda: info.context.write(work))  # type: ignore[return-value]


def _reviewer(info: Context) -> tuple[str, str]:
    """(merchant id, the key's name) of a reviewer or admin key; `Forbidden` for others."""
    caller = info.context.caller
    caller.require(Role.REVIEWER, Role.ADMIN)
    assert caller.key_name is not None  # an API key always has a name
    return caller.merchant_id, caller.key_name


async def _load_case(pg: PgConnection, merchant_id: str, case_id: int) -> ReviewCase:
    detail = await case_detail(pg, merchant_id, case_id)  # UnknownCase: NotFound
    members = [detail.case.member_id, *(linked.member_id for linked in detail.linked)]
    refused = await case_refused_redemptions(pg, merchant_id, case_id)
    return _review_case(detail, refused, await member_standings(pg, merchant_id, members))


def _review_case(
    detail: CaseDetail, refused: list[RefusedRedemption], standings: dict[str, MemberStanding]
) -> ReviewCase:
    held = detail.held
    return ReviewCase(
        **_case_fields(detail.case, standings),
        held_event_count=len(held),
        held_points=sum(h.points for h in held),
        top_score=max((h.score for h in held), default=None),
        held_by=sorted({h.decided_by for h in held}),
        held_events=[
            HeldEvent(
                intent_key=h.intent_key,
                event_id=strawberry.ID(h.event_id),
                points=h.points,
                source=h.source,
                score=h.score,
                decided_by=h.decided_by,
                reasons=h.reasons,
                decided_at=h.decided_at,
                ledger_entry_id=_id(h.ledger_entry_id),
                features=[Feature(name=k, value=v) for k, v in sorted(h.features.items())],
            )
            for h in held
        ],
        refused_checkouts=[
            RefusedCheckout(
                idempotency_key=r.idempotency_key,
                reward_id=strawberry.ID(r.reward_id),
                reasons=r.reasons,
                refused_at=r.refused_at,
            )
            for r in refused
        ],
        reasons=list(
            dict.fromkeys(
                [*(x for h in held for x in h.reasons), *(x for r in refused for x in r.reasons)]
            )
        ),
        linked_members=[
            LinkedMember(
                member=_member(standings[linked.member_id]),
                shared_identifiers=list(linked.shared),
            )
            for linked in detail.linked
        ],
    )


def _case_fields(case: Case, standings: dict[str, MemberStanding]) -> dict[str, Any]:
    return {
        "id": strawberry.ID(str(case.case_id)),
        "member": _member(standings[case.member_id]),
        "status": case.status,
        "opened_at": case.opened_at,
        "decided_at": case.decided_at,
        "decided_by": case.decided_by,
        "note": case.note,
        "froze_member": case.froze_member,
    }


def _member(standing: MemberStanding) -> ReviewedMember:
    balances = standing.balances
    return ReviewedMember(
        id=strawberry.ID(standing.member_id),
        status=standing.status,
        open_case_id=_id(standing.open_case_id),
        balance=Balance(
            available=balances.available_points,
            pending=balances.pending_points,
            reserved=balances.reserved_points,
        ),
    )


def _id(value: int | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


def _case_id(value: strawberry.ID) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"no review case {text!r}")
    return int(text)


def _cursor(order: CaseOrder, position: QueuePosition) -> str:
    """Opaque to clients: the order and the last case's place in it."""
    at = position.opened_at.isoformat()
    text = f"{order.value}/{at}/{position.case_id}/{position.top_score!r}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _position(after: str | None, order: CaseOrder) -> QueuePosition | None:
    if after is None:
        return None
    refused = QueryRefused(
        f"reviewCases(after:) takes a nextCursor of an earlier page in this order, not {after!r}"
    )
    try:
        kind, at, case_id, score = base64.urlsafe_b64decode(after.encode()).decode().split("/")
        position = QueuePosition(datetime.fromisoformat(at), int(case_id), float(score))
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise refused from error
    valid = position.opened_at.tzinfo is not None and 0 <= position.case_id < 2**63
    if kind != order.value or not valid or not math.isfinite(position.top_score):
        raise refused
    return position
