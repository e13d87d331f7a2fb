"""`pointguard demo`: the tour of the whole product, on a simulated storefront.

A fresh demo merchant gets the example program (`docs/examples/program.toml`); the simulator
(`fraud/simulation`) makes a seeded stream of storefront traffic with labelled attacks; the
stream goes through the same code paths as a real shop's, the upkeep releases and expires
points on the stream's own calendar, and a summary is read back from the ledger and the fraud
tables (docs/operations.md#the-demo lists its figures).

Rules this module enforces:
- Time is the simulated calendar's, never the wall clock's: the stream's events carry their
  own timestamps from `TOUR_START`, the upkeep runs for the demo merchant alone
  (`upkeep_pass(..., merchant_id=...)`) at each simulated day's end, and a served app's clock
  is a `SimulatedClock` the tour moves on. So the same seed tells the same story on any date.
- `minutes` sizes the stream (`CUSTOMERS_PER_MINUTE` customers a minute) and bounds the wall
  time its traffic takes: when the time is up, the rest of the calendar is not sent, and the
  summary says how far it got (`events_sent`, `calendar_end`).
- Served: the real app (`app.create_app`, run by uvicorn in this process) receives each day
  of the stream as signed Standard Webhooks sent by the simulator's sender
  (`simulation.sender.send_stream`); the tour waits until the app's inbox worker has applied
  the day, then runs that day's upkeep. The app runs no upkeep of its own (its clock is not
  the wall clock's) and no outbox dispatch (the demo merchant has no endpoint).
- Not served: the same lines go through `backtest.replay.replay` (the backtest's path:
  `program.apply.apply_events` through the fraud guard, a day's upkeep at each day's end), with
  the guard the server's worker uses (`plugin.worker.fraud_guard`), in this process.
- Checkouts (`checkout.redeemed` lines) are left out in both ways: they go through the GraphQL
  API, which the webhook sender does not call, and both ways tell the same story.
- Nobody reviews: the cases the guard opened stay open for the review console.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import Settings
from pointguard.db import PgConnection
from pointguard.demo import EXAMPLE_PROGRAM
from pointguard.fraud.backtest.replay import replay
from pointguard.fraud.backtest.stream import Checkout, Line, read_stream
from pointguard.fraud.simulation.events import HONEST
from pointguard.fraud.simulation.stream import StreamSettings, stream_lines
from pointguard.ledger import outstanding_liability
from pointguard.ledger.accounts import AccountKind
from pointguard.ledger.balances import system_balances
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant
from pointguard.plugin.merchants import NewMerchant, create_merchant
from pointguard.plugin.secretbox import Keys
from pointguard.plugin.worker import fraud_guard
from pointguard.program.document.validate import parse_program
from pointguard.upkeep import upkeep_pass

ResultT = TypeVar("ResultT")

MERCHANT_NAME = "Demo storefront"
DAY = timedelta(days=1)
# A week before the example program's Black Friday: the stream meets it and the Advent offers.
TOUR_START = datetime(2026, 11, 20, tzinfo=UTC)
TOUR_DAYS = 42
CUSTOMERS_PER_MINUTE = 150
INBOX_POLL_S = 0.05
SEND_CONCURRENCY = 8  # as `pointguard sim send` by default
INBOX_WAIT_S = 60.0
# The customer token is checked on the demo's frozen calendar: the longest a token may live.
MAX_TOKEN_LIFETIME_S = 24 * 3600  # a day's webhooks not applied by then are counted as not applied

SELECT_MEMBERS = "SELECT count(*) FROM program_members WHERE merchant_id = $1"
SELECT_ORDERS = "SELECT count(*) FROM program_orders WHERE merchant_id = $1"
SELECT_POINTS_BY_MEMBER_ACCOUNT_KIND = """
SELECT kind, coalesce(sum(balance_points), 0)::bigint AS points
FROM ledger_accounts WHERE merchant_id = $1 GROUP BY kind
"""
SELECT_HELD = """
SELECT coalesce(sum(pending_points), 0)::bigint FROM ledger_lots
WHERE merchant_id = $1 AND release_held
"""
SELECT_RELEASED = """
SELECT coalesce(sum(p.amount_points), 0)::bigint
FROM ledger_entries e
JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
JOIN ledger_accounts a ON a.merchant_id = p.merchant_id AND a.account_id = p.account_id
WHERE e.merchant_id = $1 AND e.kind = 'release' AND a.kind = 'available'
"""
SELECT_CASES = """
SELECT count(*) AS opened, count(*) FILTER (WHERE status IN ('open', 'escalated')) AS open
FROM fraud_cases WHERE merchant_id = $1
"""
SELECT_HELD_EVENTS = """
SELECT DISTINCT event_id FROM fraud_decisions WHERE merchant_id = $1 AND decision = 'hold'
"""
SELECT_INBOX = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead
FROM inbox WHERE merchant_id = $1
"""
SELECT_A_MEMBER = """
SELECT a.member_id FROM ledger_accounts a
WHERE a.merchant_id = $1 AND a.kind = 'available' AND a.balance_points > 0
  AND NOT EXISTS (SELECT 1 FROM fraud_cases c
                  WHERE c.merchant_id = a.merchant_id AND c.member_id = a.member_id)
ORDER BY a.balance_points DESC, a.member_id LIMIT 1
"""


class SimulatedClock:
    """The served app's clock: the tour's simulated moment, which only the tour moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Stream:
    """The demo's stream: its lines as the simulator wrote them and as the backtest reads
    them, checkouts left out, in time order (one index for both)."""

    texts: list[str]
    lines: list[Line]

    @classmethod
    def of(cls, seed: int, customers: int, days: int = TOUR_DAYS) -> Stream:
        settings = StreamSettings(customers=customers, days=days, seed=seed, start=TOUR_START)
        texts, lines = [], []
        for simulated in stream_lines(settings):
            line = read_stream([simulated.text])[0]
            if not isinstance(line.what, Checkout):
                texts.append(simulated.text)
                lines.append(line)
        return cls(texts, lines)

    def days(self) -> list[tuple[datetime, list[int]]]:
        """The indexes of each simulated day's lines, with the day's end, in order."""
        by_day: dict[datetime, list[int]] = defaultdict(list)
        for index, line in enumerate(self.lines):
            by_day[_day_end(line.at)].append(index)
        return sorted(by_day.items())


@dataclass
class Applied:
    """How far the stream went: the lines sent, those refused, and the calendar's last moment."""

    sent: list[Line]
    refused: int
    not_applied: int
    calendar_end: datetime


async def create_demo_merchant(engine: AsyncEngine, keys: Keys) -> NewMerchant:
    return await db.run_in_transaction(engine, create_merchant, keys, MERCHANT_NAME)


async def apply_in_process(
    engine: AsyncEngine,
    stream: Stream,
    merchant_id: str,
    keys: Keys,
    settings: Settings,
    *,
    deadline: float,
    progress: Callable[[int, int], None],
) -> Applied:
    """The stream through the backtest's replay (the module's rules), until `deadline`
    (`time.monotonic()`); the program is saved by the replay, from a day before the stream."""
    program = parse_program(EXAMPLE_PROGRAM.read_text())
    done = await replay(
        engine,
        stream.lines,
        program,
        merchant_id=merchant_id,
        settings=settings,
        review_after=None,
        guard=fraud_guard(keys),
        upkeep_every=DAY,
        stop=lambda: time.monotonic() >= deadline,
        progress=progress,
    )
    sent = list(done.lines)
    end = _day_end(sent[-1].at) if sent else TOUR_START
    await upkeep_pass(engine, end, settings=settings, merchant_id=merchant_id)
    return Applied(sent, len(done.refused), 0, end)


async def apply_over_http(
    engine: AsyncEngine,
    stream: Stream,
    new: NewMerchant,
    settings: Settings,
    clock: SimulatedClock,
    *,
    server: Server,
    deadline: float,
    progress: Callable[[int, int], None],
) -> Applied:
    """Each simulated day's lines as signed webhooks to `server`, the day applied by the app's
    worker, then the day's upkeep on the simulated calendar (the module's rules). Raises
    `ServerStopped` if the server stops first (Ctrl-C)."""
    from pointguard.fraud.simulation.sender import read_stream as deliveries_of
    from pointguard.fraud.simulation.sender import send_stream
    from pointguard.program.document.versions import save_program

    program = parse_program(EXAMPLE_PROGRAM.read_text())
    await db.run_in_transaction(
        engine, save_program, new.merchant_id, program, effective_from=TOUR_START - DAY
    )
    sent: list[Line] = []
    refused, not_applied = 0, 0
    end = TOUR_START
    total = len(stream.lines)
    for day_end, indexes in stream.days():
        if time.monotonic() >= deadline:
            break
        deliveries, _ = deliveries_of(stream.texts[i] for i in indexes)
        report = await server.while_serving(
            send_stream(
                deliveries,
                url=server.url,
                merchant=new.merchant_id,
                secret=new.webhook_secret,
                concurrency=SEND_CONCURRENCY,
                progress=partial(_progress_from, len(sent), total, progress),
            )
        )
        refused += len(report.failures)
        sent += [stream.lines[i] for i in indexes]
        not_applied = await server.while_serving(_wait_for_inbox(engine, new.merchant_id))
        clock.now = end = day_end
        await upkeep_pass(engine, day_end, settings=settings, merchant_id=new.merchant_id)
    async with db.connection(engine) as pg:
        dead = int((await pg.fetchrow(SELECT_INBOX, new.merchant_id))["dead"])
    return Applied(sent, refused + dead, not_applied, end)


def _progress_from(
    base: int, total: int, progress: Callable[[int, int], None], done: int, _of: int
) -> None:
    progress(base + done, total)


async def _wait_for_inbox(engine: AsyncEngine, merchant_id: str) -> int:
    """Wait until the merchant's inbox has nothing pending (at most `INBOX_WAIT_S`); the rows
    still pending then."""
    waited_until = time.monotonic() + INBOX_WAIT_S
    while True:
        async with db.connection(engine) as pg:
            pending = int((await pg.fetchrow(SELECT_INBOX, merchant_id))["pending"])
        if not pending or time.monotonic() >= waited_until:
            return pending
        await asyncio.sleep(INBOX_POLL_S)


async def summarize(
    engine: AsyncEngine, merchant_id: str, applied: Applied, *, seed: int, minutes: int
) -> dict[str, Any]:
    """The summary (docs/operations.md#the-demo): the ledger sealed and verified first."""
    while await db.run_in_transaction(engine, seal, merchant_id):
        pass
    async with db.connection(engine) as pg:
        figures = await _figures(pg, merchant_id)
        held_events = {r["event_id"] for r in await pg.fetch(SELECT_HELD_EVENTS, merchant_id)}
        report = await verify_merchant(pg, merchant_id)
    attacks = _attacks(applied.sent, held_events)
    return {
        "merchant_id": merchant_id,
        "seed": seed,
        "minutes": minutes,
        "calendar_start": TOUR_START.isoformat(),
        "calendar_end": applied.calendar_end.isoformat(),
        "events_sent": len(applied.sent),
        "events_refused": applied.refused,
        "events_not_applied": applied.not_applied,
        **figures,
        "attacks_caught": sum(kind["caught"] for kind in attacks.values()),
        "attacks_missed": sum(not kind["caught"] for kind in attacks.values()),
        "attacks": attacks,
        "ledger_verify": {
            "ok": report.ok,
            "entries_sealed": report.entries_sealed,
            "problems": report.problems,
        },
    }


async def _figures(pg: PgConnection, merchant_id: str) -> dict[str, int]:
    system = await system_balances(pg, merchant_id)
    members = {
        r["kind"]: int(r["points"])
        for r in await pg.fetch(SELECT_POINTS_BY_MEMBER_ACCOUNT_KIND, merchant_id)
    }
    held = int(await pg.fetchval(SELECT_HELD, merchant_id))
    cases = await pg.fetchrow(SELECT_CASES, merchant_id)
    return {
        "members": int(await pg.fetchval(SELECT_MEMBERS, merchant_id)),
        "orders": int(await pg.fetchval(SELECT_ORDERS, merchant_id)),
        "points_issued": abs(system[AccountKind.ISSUED]),
        "points_pending": members.get(AccountKind.PENDING, 0) - held,
        "points_released": int(await pg.fetchval(SELECT_RELEASED, merchant_id)),
        "points_held": held,
        "points_forfeited": abs(system[AccountKind.FORFEITED]),
        "points_expired": abs(system[AccountKind.EXPIRED]),
        "points_redeemed": abs(system[AccountKind.REDEEMED]),
        "points_available": members.get(AccountKind.AVAILABLE, 0),
        "liability_points": await outstanding_liability(pg, merchant_id),
        "cases_opened": int(cases["opened"]),
        "cases_open": int(cases["open"]),
    }


def _attacks(sent: Sequence[Line], held_events: set[str]) -> dict[str, dict[str, Any]]:
    """Per attack kind sent: its events, how many the guard held, and whether it was caught
    (at least one of its events held)."""
    kinds: dict[str, dict[str, Any]] = {}
    for line in sent:
        if line.label is None or line.label.kind == HONEST:
            continue
        kind = kinds.setdefault(line.label.kind, {"events": 0, "held_events": 0})
        kind["events"] += 1
        kind["held_events"] += line.webhook_id in held_events
    for kind in kinds.values():
        kind["caught"] = kind["held_events"] > 0
    return dict(sorted(kinds.items()))


def _day_end(at: datetime) -> datetime:
    return TOUR_START + (at - TOUR_START) // DAY * DAY + DAY


@dataclass(frozen=True)
class Invitation:
    """What to open next on the served demo, with the keys it needs."""

    url: str
    merchant_id: str
    reviewer_key: str
    member_id: str | None  # a member with points and no case, the token's
    customer_token: str | None

    def as_json(self) -> dict[str, str | None]:
        """The summary's `open_next` (docs/operations.md#the-demo)."""
        return {
            "graphiql": f"{self.url}/graphql",
            "review_console": f"{self.url}/review",
            "reviewer_key": self.reviewer_key,
            "member_id": self.member_id,
            "customer_token": self.customer_token,
        }

    def lines(self) -> list[str]:
        said = [
            f"GraphiQL (the API, explorable):  {self.url}/graphql",
            f"Review console:                  {self.url}/review",
            f"  sign in with the reviewer key  {self.reviewer_key}",
        ]
        if self.customer_token is not None:
            query = '{"query":"{ me { balance { available pending reserved } tier { name } } }"}'
            said += [
                f"Customer token for member {self.member_id} (valid on the demo's calendar):",
                f"  {self.customer_token}",
                "The member's balance, as their storefront would ask for it:",
                f"  curl -s {self.url}/graphql -H 'Authorization: Bearer {self.customer_token}'"
                f" -H 'Content-Type: application/json' -d '{query}'",
            ]
        return said


async def invitation(engine: AsyncEngine, new: NewMerchant, url: str, now: datetime) -> Invitation:
    """A reviewer key for the console, and a customer token for a member with points."""
    from pointguard.graphql.customer_tokens import (
        MAX_LIFETIME_S,
        customer_token_secret,
        mint_customer_token,
    )
    from pointguard.plugin.api_keys import KeyRole, new_api_key

    reviewer_key = await db.run_in_transaction(
        engine, new_api_key, new.merchant_id, KeyRole.REVIEWER, "demo-reviewer"
    )
    async with db.connection(engine) as pg:
        member = await pg.fetchval(SELECT_A_MEMBER, new.merchant_id)
    token = None
    if member is not None:
        token = mint_customer_token(
            customer_token_secret(new.webhook_secret),
            new.merchant_id,
            member,
            now=now,
            lifetime_s=MAX_LIFETIME_S,
        )
    return Invitation(url, new.merchant_id, reviewer_key, member, token)


class ServerNotStarted(Exception):
    """The demo's server could not start (its port taken...)."""


class ServerStopped(Exception):
    """The demo's server stopped (Ctrl-C) before the traffic was all sent."""


class Server:
    """The demo's app served by uvicorn in this process, as a task."""

    def __init__(self, server: Any, task: asyncio.Task[None], url: str) -> None:
        self._server = server
        self.task = task
        self.url = url

    async def while_serving(self, work: Coroutine[Any, Any, ResultT]) -> ResultT:
        """`work`'s result, unless the server stops first: then `work` is cancelled and
        `ServerStopped` raised."""
        job = asyncio.ensure_future(work)
        await asyncio.wait({job, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            raise ServerStopped("the demo's server stopped before the traffic was all sent")
        return job.result()

    async def stop(self) -> None:
        """Shut the app down (its lifespan's end, as on Ctrl-C) and wait for it."""
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@dataclass
class Tour:
    """A tour run: its summary and, when served, what to open and the server to wait on."""

    summary: dict[str, Any]
    invitation: Invitation | None = None
    server: Server | None = None


async def run_tour(
    engine: AsyncEngine,
    settings: Settings,
    keys: Keys,
    *,
    seed: int,
    minutes: int,
    serve: bool,
    progress: Callable[[int, int], None] = lambda done, total: None,
    customers: int | None = None,
    days: int = TOUR_DAYS,
    port: int | None = None,
) -> Tour:
    """The tour (the module's rules). Served, the app keeps running in `Tour.server` (until
    Ctrl-C or `Server.stop`); `port` 0 picks a free port. `customers` and `days` size the
    stream (by default `minutes` times `CUSTOMERS_PER_MINUTE`, and `TOUR_DAYS`)."""
    stream = Stream.of(seed, customers or CUSTOMERS_PER_MINUTE * minutes, days)
    if not serve:
        new = await create_demo_merchant(engine, keys)
        applied = await apply_in_process(
            engine,
            stream,
            new.merchant_id,
            keys,
            settings,
            deadline=time.monotonic() + 60 * minutes,
            progress=progress,
        )
        return Tour(await summarize(engine, new.merchant_id, applied, seed=seed, minutes=minutes))
    clock = SimulatedClock(TOUR_START)
    server = await start_server(
        dataclasses.replace(settings, clock=clock), port=settings.port if port is None else port
    )
    try:
        new = await create_demo_merchant(engine, keys)  # no merchant left behind by a failed start
        applied = await apply_over_http(
            engine,
            stream,
            new,
            settings,
            clock,
            server=server,
            deadline=time.monotonic() + 60 * minutes,
            progress=progress,
        )
        summary = await summarize(engine, new.merchant_id, applied, seed=seed, minutes=minutes)
        return Tour(summary, await invitation(engine, new, server.url, clock.now), server)
    except BaseException:
        await server.stop()
        raise


async def start_server(settings: Settings, *, port: int) -> Server:
    """The app on `settings` (no upkeep, no dispatch: the module's rules) served by uvicorn in
    this process, once it listens; and its URL. Raises `ServerNotStarted` if the port cannot
    be had or the app does not start."""
    import uvicorn

    from pointguard.app import create_app
    from pointguard.logs import logging_config
    from pointguard.serving import tcp_listener

    try:
        listener = tcp_listener(settings.host, port)  # bound here: a taken port is said plainly
    except OSError as error:
        raise ServerNotStarted(
            f"the demo's server cannot listen on {settings.host}:{port} ({error.strerror}):"
            " choose another --port (0 picks a free one), or --no-serve"
        ) from error
    app = create_app(settings, upkeep=False, dispatch=False)
    config = uvicorn.Config(
        app,
        log_config=logging_config(settings),
        log_level="warning",  # the progress bar and the summary, not a line per request
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            raise ServerNotStarted("the demo's server did not start: its log says why")
        await asyncio.sleep(INBOX_POLL_S)
    bound = listener.getsockname()
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return Server(server, task, f"http://{host}:{bound[1]}")
