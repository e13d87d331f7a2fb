"""Replaying a labelled stream through the program and the guard, on a scratch merchant and a
simulated clock whose time is the events' own.

Rules this module enforces:
- A replay has a merchant of its own: a new id, the program in force from a day before the
  first event, a random identity key. Nothing of another merchant is read or written, and the
  upkeep runs for that merchant alone.
- Events are applied in time order (each member's in the order given) through
  `program.apply.apply_events` with the guard, as the server's workers apply them: in batches
  of at most `MAX_BATCH` consecutive events, a transaction each. A batch refused as a whole is
  applied again one event at a time, and an event refused alone is counted as refused (the
  server would dead-letter it), not applied.
- A batch never holds a referee's event after the signup that registers the referrer's code:
  `apply_events` registers and looks codes up member by member within a round, so a referee
  whose id sorts first would miss a code registered in the same batch.
- A batch never spans an `UPKEEP_EVERY` boundary: when the next event lies past one, the
  upkeep (`upkeep.upkeep_pass`: reservation timeouts, releases, expiry, tier reviews, sealing)
  runs first at the last boundary crossed, as the server's loop would have by then.
- Then, at that boundary and in transactions of their own, the simulated reviewers
  (`reviewers.review_due_cases`) decide the cases open `review_after` or longer by the labels;
  with `review_after` None nobody reviews. Cases still open when the stream ends stay open.
- A checkout line is first screened as a storefront's is (`screen_redemption`: a member
  linked to a flagged one has their case opened and is refused), then spends at its own
  moment, after every earlier event: through `redeem` with
  the program's first points-plus-cash reward and `complete_redemption` (what a storefront's
  checkout calls), or, in a program with no such reward, through the ledger's `reserve` and
  `capture` after the same under-review check. "all" asks for the member's available points.
  A member under review (`MemberUnderReview`) or short of points (`InsufficientPoints`, or
  none at all) is refused and nothing is spent.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import Settings, load_settings
from pointguard.db import PgConnection
from pointguard.errors import (
    InsufficientPoints,
    MemberUnderReview,
    PointGuardError,
    RewardUnavailable,
)
from pointguard.fraud.backtest.reviewers import REVIEW_AFTER, review_due_cases
from pointguard.fraud.backtest.stream import Checkout, Line
from pointguard.fraud.cases import ReviewAction, refuse_if_under_review
from pointguard.fraud.guard import Guard
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.ledger.entries import EntryKind
from pointguard.ledger.keys import idempotency_key
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.apply import apply_events
from pointguard.program.document.schema import PointsPlusCash, Program
from pointguard.program.document.versions import save_program
from pointguard.program.events import Event
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import (
    DEFAULT_TIMEOUT_S,
    complete_redemption,
    redeem,
    screen_redemption,
)
from pointguard.upkeep import upkeep_pass

CHECKOUT_WITHOUT_REWARD = "points"  # the reward id recorded for a checkout spending plain points

MAX_BATCH = 100  # events per transaction, as an inbox worker claims them
UPKEEP_EVERY = timedelta(hours=1)
PROGRAM_LEAD = timedelta(days=1)  # the program is in force this long before the first event
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

SELECT_BACKTEST_DECISIONS = """
SELECT event_id, member_id, points, source, decision = 'hold' AS held, score, decided_by,
       ledger_entry_id
FROM fraud_decisions WHERE merchant_id = $1 ORDER BY decided_at, intent_key
"""


class Spent(StrEnum):
    """How a checkout line ended."""

    REDEEMED = "redeemed"
    UNDER_REVIEW = "under_review"  # refused by the guard's standing: an open case, a freeze
    SHORT = "insufficient_points"  # the member's available points fell short (or were none)
    REFUSED = "refused"  # the reward refused it for another reason (RewardUnavailable)


@dataclass(frozen=True)
class CheckoutResult:
    line: Line
    spent: Spent
    points: int  # spent if redeemed, else asked for


@dataclass(frozen=True)
class Decision:
    """A row of `fraud_decisions`: the guard's verdict on one reward-bearing intent."""

    event_id: str
    member_id: str
    points: int
    source: str
    held: bool
    score: float
    decided_by: str
    stopped: bool  # held, or forfeited by a confirmed case, before its points were released


@dataclass
class Replayed:
    """What a replay did: the stream, the guard's decisions and the checkouts' ends."""

    merchant_id: str
    lines: Sequence[Line]
    decisions: list[Decision] = field(default_factory=list)
    checkouts: list[CheckoutResult] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # webhook id → why it was refused
    batches: int = 0
    upkeep_passes: int = 0
    cases_cleared: int = 0  # by the simulated reviewers
    cases_confirmed: int = 0
    seconds: float = 0.0


async def replay(
    engine: AsyncEngine,
    lines: Sequence[Line],
    program: Program,
    *,
    merchant_id: str | None = None,
    settings: Settings | None = None,
    review_after: timedelta | None = REVIEW_AFTER,
    guard: Guard | None = None,
    upkeep_every: timedelta = UPKEEP_EVERY,
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Replayed:
    """Replay `lines` (in time order, as `stream.read_stream` gives them) on a new merchant
    (`merchant_id`, or a fresh `backtest-...` id), with reviewers deciding each case
    `review_after` after it opened (None: nobody reviews), and read back the guard's
    decisions.

    `guard`: the guard to apply through (by default one with a random identity key);
    `upkeep_every`: how often the upkeep runs on the stream's clock; `stop`: asked at each
    upkeep boundary, True ends the replay there (the demo's wall-time bound), and then
    `Replayed.lines` holds only the lines replayed; `progress(done, total)` is called with the
    lines replayed so far at each boundary and at the end."""
    began = time.perf_counter()
    merchant = merchant_id or f"backtest-{secrets.token_hex(6)}"
    done = Replayed(merchant, lines)
    if not lines:
        return done
    settings = settings or load_settings()
    if guard is None:
        key = secrets.token_bytes(32)

        async def identity_key(pg: PgConnection, merchant_id: str) -> bytes:
            return key

        guard = Guard(identity_key)
    labels = {line.webhook_id: line.label for line in lines if line.label is not None}
    await db.run_in_transaction(
        engine, save_program, merchant, program, effective_from=lines[0].at - PROGRAM_LEAD
    )
    batch: list[tuple[Line, Event]] = []
    last_boundary = _boundary(lines[0].at, upkeep_every)
    for number, line in enumerate(lines):
        boundary = _boundary(line.at, upkeep_every)
        if boundary > last_boundary or isinstance(line.what, Checkout) or len(batch) == MAX_BATCH:
            await _apply(engine, merchant, guard, batch, done)
            batch = []
        if boundary > last_boundary:
            progress(number, len(lines))
            if stop():
                done.lines = lines[:number]
                break
            await upkeep_pass(engine, boundary, settings=settings, merchant_id=merchant)
            done.upkeep_passes += 1
            last_boundary = boundary
            if review_after is not None:
                decided = await review_due_cases(
                    engine, merchant, labels, now=boundary, review_after=review_after
                )
                done.cases_cleared += decided[ReviewAction.CLEAR]
                done.cases_confirmed += decided[ReviewAction.CONFIRM]
        if isinstance(line.what, Checkout):
            done.checkouts.append(await _checkout(engine, merchant, program, line, line.what))
        elif line.what is not None:
            batch.append((line, line.what))
    await _apply(engine, merchant, guard, batch, done)
    progress(len(done.lines), len(lines))
    async with db.connection(engine) as pg:
        done.decisions = await _decisions(pg, merchant)
    done.seconds = time.perf_counter() - began
    return done


async def _decisions(pg: PgConnection, merchant_id: str) -> list[Decision]:
    """The guard's decisions, each with whether its points were stopped before release."""
    rows = await pg.fetch(SELECT_BACKTEST_DECISIONS, merchant_id)
    forfeit_keys = {
        row["ledger_entry_id"]: idempotency_key(EntryKind.FORFEIT, row["ledger_entry_id"])
        for row in rows
        if row["ledger_entry_id"] is not None
    }
    forfeited = await load_entries_by_key(pg, merchant_id, list(forfeit_keys.values()))
    decisions = []
    for row in rows:
        fields = dict(row)
        entry_id = fields.pop("ledger_entry_id")
        stopped = row["held"] or forfeit_keys.get(entry_id) in forfeited
        decisions.append(Decision(**fields, stopped=stopped))
    return decisions


def _boundary(at: datetime, every: timedelta = UPKEEP_EVERY) -> datetime:
    """The last `every` boundary at or before `at`."""
    return at - (at - EPOCH) % every


async def _apply(
    engine: AsyncEngine,
    merchant_id: str,
    guard: Guard,
    batch: Sequence[tuple[Line, Event]],
    done: Replayed,
) -> None:
    """Apply the batch in one transaction; if it is refused, each event alone."""
    if not batch:
        return
    done.batches += 1
    events = [event for _, event in batch]
    try:
        await db.run_in_transaction(engine, apply_events, merchant_id, events, guard=guard)
        return
    except PointGuardError:
        pass  # some event of it is refused: find which, applying the others
    for line, event in batch:
        try:
            await db.run_in_transaction(engine, apply_events, merchant_id, [event], guard=guard)
        except PointGuardError as error:
            done.refused[line.webhook_id] = f"{error.code}: {error}"


async def _checkout(
    engine: AsyncEngine, merchant_id: str, program: Program, line: Line, checkout: Checkout
) -> CheckoutResult:
    reward = next((r for r in program.rewards if isinstance(r, PointsPlusCash)), None)
    asked = checkout.points
    await db.run_in_transaction(
        engine,
        screen_redemption,
        merchant_id,
        checkout.member_id,
        reward.id if reward else CHECKOUT_WITHOUT_REWARD,
        key=line.webhook_id,
        now=line.at,
    )
    try:
        spent = await db.run_in_transaction(
            engine, _spend, merchant_id, reward, line, checkout.member_id, asked
        )
    except MemberUnderReview:
        return CheckoutResult(line, Spent.UNDER_REVIEW, asked or 0)
    except InsufficientPoints:
        return CheckoutResult(line, Spent.SHORT, asked or 0)
    except RewardUnavailable:
        return CheckoutResult(line, Spent.REFUSED, asked or 0)
    return CheckoutResult(line, Spent.REDEEMED if spent else Spent.SHORT, spent)


async def _spend(
    pg: PgConnection,
    merchant_id: str,
    reward: PointsPlusCash | None,
    line: Line,
    member_id: str,
    asked: int | None,
) -> int:
    """Spend `asked` points (None: all available) at the line's moment; the points spent."""
    if asked is None:
        asked = (await member_balances(pg, merchant_id, member_id)).available_points
    if reward is not None:
        asked -= asked % reward.cost_points  # whole units only
    if asked <= 0:
        await refuse_if_under_review(pg, merchant_id, member_id)
        return 0
    if reward is None:
        await refuse_if_under_review(pg, merchant_id, member_id)
        hold = await ops.reserve(
            pg,
            merchant_id,
            member_id,
            asked,
            key=idempotency_key("backtest-checkout", line.webhook_id),
            description=f"{asked} points at checkout",
            source="backtest.checkout",
            now=line.at,
            timeout_s=DEFAULT_TIMEOUT_S,
        )
        await ops.capture(pg, merchant_id, hold.entry_id, description="Redeemed at checkout")
        return asked
    # A cart just big enough for the points to pay its allowed share.
    discount_minor = asked // reward.cost_points * reward.amount_minor
    cart = Cart(subtotal_minor=-(-discount_minor * 100 // reward.max_share_percent))
    redemption = await redeem(
        pg,
        merchant_id,
        member_id,
        reward.id,
        cart,
        key=line.webhook_id,
        now=line.at,
        points=asked,
    )
    await complete_redemption(pg, merchant_id, redemption.redemption_id)
    return redemption.points
