"""`pointguard fraud`: the risk reviewers' queue of cases the fraud guard opened, one case with
its held rewards and linked members, and deciding it (`clear`, `confirm`, `escalate`) through
`program.review.review_case`, in one transaction. A case decided before, an unknown case and an
unknown merchant are one line on stderr and exit 1; nothing changes. `backtest` replays a
labelled stream on a scratch merchant and measures the guard against its labels."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import JsonOutput, MerchantId, given_or_now, with_engine
from pointguard.fraud.cases import CaseStatus, ReviewAction

if TYPE_CHECKING:
    from pointguard.db import PgConnection
    from pointguard.fraud.cases import Case, CaseDetail

app = typer.Typer(help="The fraud guard's review cases.", no_args_is_help=True)

MAX_LISTED = 1000
QUEUE_STATUSES = (CaseStatus.OPEN, CaseStatus.ESCALATED)

# The points of a case's held earns still pending after a decision: a cleared case's earns not
# yet due (the upkeep releases them when their return windows end), or an escalated case's.
SUM_CASE_PENDING_POINTS = """
SELECT COALESCE(SUM(l.pending_points), 0)::bigint FROM fraud_decisions d
JOIN ledger_lots l ON l.merchant_id = d.merchant_id AND l.lot_id = d.ledger_entry_id
WHERE d.merchant_id = $1 AND d.case_id = $2 AND d.decision = 'hold'
"""

CaseId = Annotated[int, typer.Argument(help="The review case's id (from `fraud cases`).")]
Reviewer = Annotated[str, typer.Option(help="Who decides: stored with the case.")]
Note = Annotated[str | None, typer.Option(help="Why, in a few words: stored with the case.")]
At = Annotated[
    datetime | None, typer.Option("--at", help="When it is decided (default: now; UTC if no zone).")
]


@app.command("cases")
def fraud_cases(
    merchant: MerchantId,
    status: Annotated[
        list[CaseStatus] | None,
        typer.Option(
            help="Only cases in this status; repeat for several (default: open, escalated)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LISTED, help="At most this many, oldest first.")
    ] = 50,
    as_json: JsonOutput = False,
) -> None:
    """List the review queue, oldest case first."""
    from pointguard.fraud.cases import case_queue

    statuses = tuple(dict.fromkeys(status)) if status else QUEUE_STATUSES

    async def find(engine: AsyncEngine) -> list[Case]:
        async with db.connection(engine) as pg:
            return await case_queue(pg, merchant, statuses, limit=limit)

    cases = with_engine(find, merchant=merchant)
    if as_json:
        typer.echo(_json([_case_fields(case) for case in cases]))
        return
    if not cases:
        wanted = " or ".join(s.value for s in statuses)
        typer.echo(f"no {wanted} cases for merchant {merchant}")
    for case in cases:
        typer.echo(f"case {case.case_id}  {case.status.value:<9}  {_case_words(case)}")


@app.command("show")
def fraud_show(merchant: MerchantId, case_id: CaseId, as_json: JsonOutput = False) -> None:
    """Show a case: its status and decision, the rewards it holds (points, source, the rule
    that held each and why) and the members sharing identifiers with its member."""
    from pointguard.fraud.cases import case_detail

    async def read(engine: AsyncEngine) -> CaseDetail:
        async with db.connection(engine) as pg, pg.transaction(isolation="repeatable_read"):
            return await case_detail(pg, merchant, case_id)

    detail = with_engine(read, merchant=merchant)
    if as_json:
        typer.echo(_json({"merchant_id": merchant, **_detail_fields(detail)}))
        return
    _print_detail(merchant, detail)


def _decision_command(action: ReviewAction, summary: str) -> None:
    """Register `fraud <action>`, a decision that takes no `--freeze`, as `summary` says."""

    def decide(
        merchant: MerchantId,
        case_id: CaseId,
        reviewer: Reviewer,
        note: Note = None,
        at: At = None,
        as_json: JsonOutput = False,
    ) -> None:
        _decide(merchant, case_id, action, reviewer, note, False, False, at, as_json)

    decide.__doc__ = summary
    app.command(action.value)(decide)


_decision_command(
    ReviewAction.CLEAR,
    """Clear a case: its held rewards are let go (released now if due, else when their return
    window ends) and the storefront hears `member.cleared`.""",
)


@app.command("confirm")
def fraud_confirm(
    merchant: MerchantId,
    case_id: CaseId,
    reviewer: Reviewer,
    note: Note = None,
    freeze: Annotated[
        bool,
        typer.Option(
            "--freeze", help="Freeze the member too: every later earn held, checkouts refused."
        ),
    ] = False,
    void_referrals: Annotated[
        bool,
        typer.Option(
            "--void-referrals",
            help="Reverse the member's rewarded referrals too, taking back what they earned.",
        ),
    ] = False,
    at: At = None,
    as_json: JsonOutput = False,
) -> None:
    """Confirm a case as abuse: its held rewards' pending points are forfeited."""
    _decide(
        merchant, case_id, ReviewAction.CONFIRM, reviewer, note, freeze, void_referrals, at, as_json
    )


_decision_command(
    ReviewAction.ESCALATE,
    "Escalate an open case to a senior reviewer: it stays open and its rewards stay held.",
)


def _decide(
    merchant: str,
    case_id: int,
    action: ReviewAction,
    reviewer: str,
    note: str | None,
    freeze: bool,
    void_referrals: bool,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Decide the case with `review_case` and say what happened."""
    from pointguard.ledger import AccountKind, EntryKind
    from pointguard.program.review import review_case

    when = given_or_now(at)

    async def decide(pg: PgConnection) -> dict[str, Any]:
        reviewed = await review_case(
            pg,
            merchant,
            case_id,
            action,
            reviewer=reviewer,
            note=note,
            freeze=freeze,
            void_referrals=void_referrals,
            now=when,
        )
        # Releases and forfeits take the points from the member's pending account; voided
        # referral rewards come back from pending or available.
        voids = [e for e in reviewed.entries if e.kind in (EntryKind.REVERSAL, EntryKind.CLAWBACK)]
        return {
            "merchant_id": merchant,
            "action": action.value,
            "case": _case_fields(reviewed.case),
            "moved_points": -sum(
                e.member_delta(AccountKind.PENDING) for e in reviewed.entries if e not in voids
            ),
            "voided_referral_points": -sum(
                e.member_delta(AccountKind.PENDING) + e.member_delta(AccountKind.AVAILABLE)
                for e in voids
            ),
            "still_pending_points": await pg.fetchval(SUM_CASE_PENDING_POINTS, merchant, case_id),
            "entry_ids": [entry.entry_id for entry in reviewed.entries],
        }

    done = with_engine(lambda engine: db.run_in_transaction(engine, decide), merchant=merchant)
    if as_json:
        typer.echo(_json(done))
        return
    case = done["case"]
    said = f"case {case_id} ({case['member_id']}) {case['status']} by {reviewer}"
    if action == ReviewAction.CLEAR:
        said += f": {done['moved_points']} points released now"
        if done["still_pending_points"]:
            said += f", {done['still_pending_points']} more when their return windows end"
    elif action == ReviewAction.CONFIRM:
        said += f": {done['moved_points']} pending points forfeited"
        if case["froze_member"]:
            said += f"; member {case['member_id']} frozen"
        if void_referrals:
            said += f"; {done['voided_referral_points']} referral points withdrawn"
    else:
        said += f": {done['still_pending_points']} points stay held for a senior reviewer"
    typer.echo(said)


def _case_fields(case: Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "member_id": case.member_id,
        "status": case.status.value,
        "opened_at": case.opened_at,
        "decided_at": case.decided_at,
        "decided_by": case.decided_by,
        "note": case.note,
        "froze_member": case.froze_member,
    }


def _detail_fields(detail: CaseDetail) -> dict[str, Any]:
    return {
        "case": _case_fields(detail.case),
        "held": [
            {
                "points": held.points,
                "source": held.source,
                "rule": held.decided_by,
                "score": held.score,
                "reasons": held.reasons,
                "held_at": held.decided_at,
                "member_id": held.member_id,
                "event_id": held.event_id,
                "intent_key": held.intent_key,
                "ledger_entry_id": held.ledger_entry_id,
                "features": held.features,
            }
            for held in detail.held
        ],
        "linked": [
            {
                "member_id": linked.member_id,
                "shared": list(linked.shared),
                "open_case_id": linked.open_case_id,
                "frozen": linked.frozen,
            }
            for linked in detail.linked
        ],
    }


def _case_words(case: Case) -> str:
    said = f"member {case.member_id}, opened {_when(case.opened_at)}"
    if case.decided_at is not None:
        said += f"; decided by {case.decided_by} at {_when(case.decided_at)}"
        if case.froze_member:
            said += ", member frozen"
        if case.note:
            said += f": {case.note}"
    return said


def _print_detail(merchant: str, detail: CaseDetail) -> None:
    case = detail.case
    typer.echo(f"case {case.case_id} at {merchant}: {case.status.value}, {_case_words(case)}")
    typer.echo(f"held rewards ({len(detail.held)}):")
    for held in detail.held:
        typer.echo(
            f"  {held.points} points, {held.source}, held by {held.decided_by}"
            f" (score {held.score:.2f}) on {_when(held.decided_at)}"
        )
        for reason in held.reasons:
            typer.echo(f"    - {reason}")
    typer.echo(f"linked members ({len(detail.linked)}):")
    for linked in detail.linked:
        case_words = f"open case {linked.open_case_id}" if linked.open_case_id else "no open case"
        frozen = ", frozen" if linked.frozen else ""
        typer.echo(f"  {linked.member_id}: shares {', '.join(linked.shared)}; {case_words}{frozen}")


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="minutes")


def _json(document: object) -> str:
    import msgspec

    return msgspec.json.encode(document).decode()


@app.command("backtest")
def fraud_backtest(
    stream: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A labelled stream, one JSON object per line (`pointguard sim generate`).",
        ),
    ],
    program: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A program document (TOML) to run instead of the backtest's own.",
        ),
    ] = None,
    review_after: Annotated[
        str,
        typer.Option(
            metavar="HOURS",
            help="Simulated reviewers decide each case this many hours after it opened, by"
            " the labels (confirm if any held event is abusive, else clear); none or 0: nobody"
            " reviews.",
        ),
    ] = "24",
    as_json: JsonOutput = False,
) -> None:
    """Replay a labelled stream through the program and the guard on a new scratch merchant,
    on a clock that is the events' own (upkeep every simulated hour, checkouts spending at
    their moment, reviewers deciding cases by the labels), and measure the guard's decisions
    against the labels: ROC and PR AUC, precision at a 3 % alert budget, abusive points held
    and redeemed, honest events held, cases cleared and confirmed, and per attack kind the
    events before its first hold."""
    from pointguard.errors import ProgramInvalid
    from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
    from pointguard.fraud.backtest.replay import replay
    from pointguard.fraud.backtest.report import figures, in_words
    from pointguard.fraud.backtest.reviewers import review_after_of
    from pointguard.fraud.backtest.stream import StreamInvalid, read_stream
    from pointguard.program.document.validate import parse_program

    try:
        turnaround = review_after_of(review_after)
        document = parse_program(BACKTEST_PROGRAM if program is None else program.read_text())
        with stream.open(encoding="utf-8") as texts:
            lines = read_stream(texts)
    except (ProgramInvalid, StreamInvalid, ValueError) as error:
        typer.echo(f"fraud backtest: {error}", err=True)
        raise typer.Exit(code=1) from error
    done = with_engine(lambda engine: replay(engine, lines, document, review_after=turnaround))
    found = figures(done)
    if as_json:
        typer.echo(_json(found))
        return
    in_words(found, typer.echo)
