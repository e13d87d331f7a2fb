"""The customer's `me` over GraphQL end to end: the real server, customer tokens, a page of
history from the ledger, measured against a bare Strawberry server in the same run.

Usage: python bench/graphql_speed.py [--seconds N] [--members M] [--workers W]
                                     [--concurrency C]

Machines of one kind differ up to 2x in speed, so the figure that matters is a ratio to a
baseline measured beside it: `bench/bare_graphql.py`, a Strawberry app with a schema of the
same shape answering the same query from memory (constant data, no credential, no database),
with the parser and validation caches PointGuard's schema has too.

Starts a fresh embedded PostgreSQL (or uses DATABASE_URL), migrates, creates one merchant with
a program with tiers, and gives each of M members (10,000 by default) 22 earns posted in bulk
(`post_entries`, 1,000 a statement, member after member in each of 22 rounds, so a member's
entries lie apart as they would after months of orders): 20 available and, newest, 2 pending;
each member has the tier the program's rules give it, and the ledger is sealed (else the
server's upkeep would seal it all during the measurement). The servers are started before
their phases (start-ups not counted): the bare one while the data is made, idle until its
phase; PointGuard's once the data is there, stopped before the bare one is measured.

  me         `pointguard serve --workers W` (W processes, as operators run it):
    saturate   C connections (16 by default), each sending the next query as soon as the last
               is answered, 1 s of warm-up then N s counted: me_max_rps, the answers per
               second that are 200s without `errors`.
    paced      open loop at half of me_max_rps for N s on up to C connections; latency is from
               each request's scheduled send time to its answer, so a server that falls behind
               is charged for the queueing too: me_p50_ms, me_p99_ms (target: p99 <= 25 ms).
  bare       `bench/bare_graphql.py` on the same uvicorn settings (W processes, uvloop,
             httptools), saturated as above: bare_max_rps.

me_over_bare = me_max_rps / bare_max_rps (target: >= 0.6).

Every request is the one query below, `POST /graphql` with `Authorization: Bearer` and a
customer token (HS256 with the merchant's customer-token secret, minted by the load process
for every member), the members taking turns round-robin across all connections. The server
allows each member 20 requests a second per process (POINTGUARD_GRAPHQL_CUSTOMER_RATE_PER_S,
not changed here), so M members may send at least M * 20 a second: 200,000 by default, 10,000
for the smoke run's 500, far above what 2 cores answer; a 429 would count as an error.
The bare server is sent the same requests. A separate load process (this file, `--load`) drives
the servers on 127.0.0.1 with the small keep-alive HTTP/1.1 client of loopback_http.py (the
load shares the machine with the server and PostgreSQL, so its cost per request matters).

errors counts answers other than 200, 200s whose body has `errors`, failed requests
(connection errors, timeouts after 10 s), and sampled answers of the wrong shape: one answer in
SAMPLE_EVERY is parsed and checked in full (a balance, a tier, a page of 20 entries with a next
cursor).

Also reported: the peak RSS of PointGuard's server (all its processes together, sampled every
0.1 s), and, during each saturate phase, the CPU each party (server, PostgreSQL, load
generator) used as a share of the machine.
Prints a table, then one JSON object as the last line.

(Not `bench/graphql.py`: Python puts a script's folder first on sys.path, so a `graphql.py`
there would stand in for graphql-core in every bench script that imports Strawberry.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest import (
    REQUEST_TIMEOUT_S,
    CpuWatch,
    LoadResult,
    Monitor,
    clients,
    embedded_database,
    paced,
    pointguard_command,
    print_load_result,
    run_load,
    saturate,
    server_process,
    wait_ready,
)
from loopback_http import HOST, free_port
from stats import percentile, print_figures

from pointguard import db
from pointguard.graphql.customer_tokens import customer_token_secret, mint_customer_token
from pointguard.ledger import operations as ops
from pointguard.ledger.entries import MAX_BATCH_ENTRIES
from pointguard.ledger.maintenance import seal_all
from pointguard.ledger.posting import post_entries
from pointguard.plugin.merchants import create_merchant
from pointguard.program.document.schema import Program
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.tiers.rules import next_review, tier_for

THIS_FILE = str(Path(__file__).resolve())
BARE_SERVER = str(Path(__file__).resolve().parent / "bare_graphql.py")
DEFAULT_MEMBERS = 10_000
DEFAULT_WORKERS = 2
DEFAULT_CONCURRENCY = 16
PAGE = 20
AVAILABLE_EARNS = 20  # per member, then PENDING_EARNS newer ones: 22 entries, a next page
PENDING_EARNS = 2
SAMPLE_EVERY = 50  # one answer in this many is parsed and checked in full
TOKEN_LIFETIME_S = 3600  # a load process lives seconds; tokens may live up to 24 h
TARGET_ME_OVER_BARE = 0.6
TARGET_P99_MS = 25.0
ME_QUERY = (
    "{ me { balance { available pending reserved } tier { name }"
    " history(first: 20) { entries { at kind description availableChange pendingChange status }"
    " nextCursor } } }"
)
QUERY_BODY = json.dumps({"query": ME_QUERY}).encode()
PROGRAM = """
name = "Bench"
currency = "EUR"
return_window_days = 14
earning = { points_per_major_unit = "1" }
tiers.levels = [{ name = "Silver", threshold = 0, perks = ["birthday gift"] },
                { name = "Gold", threshold = 50000, multiplier = "1.5" }]
"""


# ---------------------------------------------------------------------------------------------
# The load generator (a separate process: `python bench/graphql_speed.py --load ...`)
# ---------------------------------------------------------------------------------------------


def read_callers(audience_file: str) -> list[dict[str, str]]:
    """Every member's request headers, with a customer token minted now (the merchant's id and
    token secret are in a file only its owner can read, not on the command line)."""
    audience = json.loads(Path(audience_file).read_text())
    now = datetime.now(UTC)
    return [
        {
            "authorization": "Bearer "
            + mint_customer_token(
                audience["token_secret"],
                audience["merchant_id"],
                member,
                now=now,
                lifetime_s=TOKEN_LIFETIME_S,
            ),
            "content-type": "application/json",
        }
        for member in members(audience["members"])
    ]


def members(count: int) -> list[str]:
    return [f"m{i}" for i in range(count)]


def answer_problem(body: bytes) -> str | None:
    """What is wrong with a `me` answer, or None: data in the asked shape, nothing null."""
    try:
        me = json.loads(body)["data"]["me"]
        balance, history = me["balance"], me["history"]
        if not all(isinstance(balance[k], int) for k in ("available", "pending", "reserved")):
            return "balance"
        if not isinstance(me["tier"]["name"], str):
            return "tier"
        if len(history["entries"]) != PAGE or not history["nextCursor"]:
            return "history page"
        if not all(e["kind"] and e["at"] and e["status"] for e in history["entries"]):
            return "history entry"
    except (ValueError, KeyError, TypeError) as error:
        return f"shape ({type(error).__name__})"
    return None


async def send_me(client: Any, headers: dict[str, str], check: bool, result: LoadResult) -> bool:
    """One `me` query; True for a 200 without `errors` (and of the right shape, if checked)."""
    result.sent += 1
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, body = await client.post_for_body("/graphql", headers, QUERY_BODY)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        client.close()
        result.errors += 1
        result.statuses[type(error).__name__] += 1
        return False
    if status != 200 or b'"errors"' in body:
        result.errors += 1
        result.statuses[f"{status} with errors" if status == 200 else str(status)] += 1
        return False
    problem = answer_problem(body) if check else None
    if problem is not None:
        result.errors += 1
        result.statuses[f"200 wrong {problem}"] += 1
        if result.statuses[f"200 wrong {problem}"] == 1:  # the first of each kind, to see why
            print(f"a wrong answer ({problem}): {body[:1000]!r}", file=sys.stderr)
        return False
    result.statuses["200"] += 1
    if check:
        result.statuses["200 checked in full"] += 1
    return True


def load_main(args: argparse.Namespace) -> None:
    callers = read_callers(args.audience_file)
    turn = itertools.cycle(callers)  # the members take turns, across all connections
    sent = itertools.count()

    def send(client: Any, key: str, result: LoadResult) -> Awaitable[bool]:
        return send_me(client, next(turn), next(sent) % SAMPLE_EVERY == 0, result)

    async def load() -> LoadResult:
        async with clients("raw", args.port, args.concurrency) as made:
            if args.load == "saturate":
                return await saturate(made, args.seconds, send)
            return await paced(made, args.seconds, args.rate, send)

    started = time.time()
    print_load_result(asyncio.run(load()), started)


# ---------------------------------------------------------------------------------------------
# The bench: database, servers, phases, figures
# ---------------------------------------------------------------------------------------------


async def populate(engine: Any, merchant_id: str, count: int) -> int:
    """Every member's earns, in rounds (one earn per member each), newest pending; returns how
    many entries were posted."""
    posted = 0
    release_at = datetime.now(UTC) + timedelta(days=30)
    everyone = members(count)
    for round_ in range(AVAILABLE_EARNS + PENDING_EARNS):
        pending = round_ >= AVAILABLE_EARNS
        for start in range(0, count, MAX_BATCH_ENTRIES):
            entries = [
                ops.earn_entry(
                    merchant_id,
                    member,
                    10 + (round_ * 7 + i) % 90,
                    key=f"order-{round_}-{member}",
                    description=f"Points for order #{100_000 + round_ * count + start + i}",
                    source="bench",
                    release_at=release_at if pending else None,
                )
                for i, member in enumerate(everyone[start : start + MAX_BATCH_ENTRIES])
            ]
            await db.in_transaction(engine, lambda pg, e=entries: post_entries(pg, e))
            posted += len(entries)
    return posted


# The tier every member would have been reviewed into (the program's rules decide which), as
# the program stores it after a member's first order: one statement for all of them.
INSERT_MEMBER_TIERS = """
INSERT INTO program_members (merchant_id, member_id, tier, tier_review_at)
SELECT $1, member_id, $3, $4 FROM unnest($2::text[]) AS member_id
"""


async def give_tiers(engine: Any, merchant_id: str, program: Program, count: int) -> str | None:
    """Every member's tier, as a review with nothing bought yet decides it; returns it."""
    now = datetime.now(UTC)
    tier = tier_for(program, 0)
    review_at = next_review(program.tiers, now)
    await db.in_transaction(
        engine,
        lambda pg: pg.execute(INSERT_MEMBER_TIERS, merchant_id, members(count), tier, review_at),
    )
    return tier


async def measured_saturate(
    port: int, server_pid: int, setup: Setup, args: argparse.Namespace
) -> dict[str, Any]:
    """One saturate phase: good answers per second, errors, and the CPU each party used."""
    cpu = CpuWatch(server_pid, setup.backend_pid)
    sat = await run_load(
        "saturate", port, setup.audience_file, load_options(args), script=THIS_FILE
    )
    return {
        "max_rps": sat["counted"] / args.seconds,
        "p50_ms": percentile(sat["latencies_ms"], 0.50),
        "p99_ms": percentile(sat["latencies_ms"], 0.99),
        "errors": sat["errors"],
        "statuses": sat["statuses"],
        **cpu.shares(sat["cpu_s"]),
    }


def load_options(args: argparse.Namespace) -> list[str]:
    return ["--seconds", str(args.seconds), "--concurrency", str(args.concurrency)]


def bare_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        BARE_SERVER,
        "--host",
        HOST,
        "--port",
        f"{port}",
        "--workers",
        f"{workers}",
    ]


@dataclass
class Setup:
    """The data the phases read: one merchant, its members' file for the load process."""

    audience_file: Path
    backend_pid: int  # a connection of the bench's, to find PostgreSQL's processes
    entries: int
    setup_s: float


async def set_up(engine: Any, args: argparse.Namespace, key: bytes, scratch: Path) -> Setup:
    """The merchant, its program (with tiers), its members' tiers and earns, all sealed."""
    started = time.monotonic()
    await db.migrate(engine)
    merchant = await db.run_in_transaction(
        engine, create_merchant, key, "Bench Shop", merchant_id=f"bench-{int(time.time())}"
    )
    program = parse_program(PROGRAM)
    await db.run_in_transaction(
        engine,
        save_program,
        merchant.merchant_id,
        program,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    entries = await populate(engine, merchant.merchant_id, args.members)
    await give_tiers(engine, merchant.merchant_id, program, args.members)
    # Sealed, as the server's upkeep keeps the ledger: else its first pass would seal all of
    # the above during the measurement.
    await seal_all(engine, merchant.merchant_id)
    async with db.connection(engine) as pg:
        backend_pid = await pg.fetchval("SELECT pg_backend_pid()")
        await pg.execute("ANALYZE")  # as autovacuum would soon after such a load
    audience_file = scratch / "audience.json"
    audience_file.write_text(
        json.dumps(
            {
                "merchant_id": merchant.merchant_id,
                "token_secret": customer_token_secret(merchant.webhook_secret),
                "members": args.members,
            }
        )
    )
    return Setup(audience_file, backend_pid, entries, time.monotonic() - started)


WORKERS_SETTLE_S = 5


async def main(args: argparse.Namespace) -> dict[str, Any]:
    key = os.urandom(32)
    async with embedded_database() as (url, scratch):
        engine = db.create_engine(db.async_url(url), pool_size=2)
        env = {
            **os.environ,
            "DATABASE_URL": db.libpq_url(url),
            "POINTGUARD_SECRET_KEY": base64.b64encode(key).decode(),
            "POINTGUARD_DATA_DIR": str(scratch / "data"),
            "POINTGUARD_LOG_LEVEL": "warning",
        }
        monitor = Monitor(engine)
        bare_port, bare_log = free_port(), scratch / "bare.log"
        # The bare server starts while the data is made, and stays up throughout, idle but in
        # its own phase (it does nothing in the background); PointGuard's server is started
        # once the data is there, and stopped before the bare one is measured.
        async with server_process(bare_command(bare_port, args.workers), env, bare_log) as bare:
            setup = await set_up(engine, args, key, scratch)
            sampling = asyncio.create_task(monitor.run())
            try:
                port, log = free_port(), scratch / "pointguard.log"
                command = pointguard_command(port, args.workers)
                async with server_process(command, env, log) as server:
                    await wait_ready(port, server, log)
                    # /readyz answers from the first process up; the others are still in their
                    # start-up (migrations checked, credentials sealed). Connections opened now
                    # would all land on the first one, and the bench would measure one process.
                    await asyncio.sleep(WORKERS_SETTLE_S)
                    monitor.server_pid = server.pid
                    me = await measured_saturate(port, server.pid, setup, args)
                    rate = max(1, round(me["max_rps"] / 2))
                    paced_options = [*load_options(args), "--rate", str(rate)]
                    pac = await run_load(
                        "paced", port, setup.audience_file, paced_options, script=THIS_FILE
                    )
                    monitor.server_pid = None
                await wait_ready(bare_port, bare, bare_log, path="/")
                baseline = await measured_saturate(bare_port, bare.pid, setup, args)
            finally:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
        await engine.dispose()
    return figures(args, setup, me, pac, rate, baseline, monitor)


def figures(
    args: argparse.Namespace,
    setup: Setup,
    me: dict[str, Any],
    pac: dict[str, Any],
    rate: int,
    bare: dict[str, Any],
    monitor: Monitor,
) -> dict[str, Any]:
    me_rps, bare_rps = round(me["max_rps"]), round(bare["max_rps"])
    me_over_bare = round(me["max_rps"] / bare["max_rps"], 2) if bare["max_rps"] else float("nan")
    p99 = round(percentile(pac["latencies_ms"], 0.99), 2)
    statuses = {
        "me_saturate": me["statuses"],
        "me_paced": pac["statuses"],
        "bare_saturate": bare["statuses"],
    }

    def shares(phase: dict[str, Any], prefix: str) -> dict[str, Any]:
        names = ("server", "postgres", "load", "machine_busy")
        return {f"{prefix}_cpu_share_{n}": round(phase[f"cpu_share_{n}"], 3) for n in names}

    return {
        "me_over_bare": me_over_bare,
        "me_over_bare_ok": me_over_bare >= TARGET_ME_OVER_BARE,
        "me_p99_ms": p99,
        "me_p99_ok": p99 <= TARGET_P99_MS,
        "me_max_rps": me_rps,
        "bare_max_rps": bare_rps,
        "me_p50_ms": round(percentile(pac["latencies_ms"], 0.50), 2),
        "paced_offered_per_s": rate,
        # Good answers per second over the paced phase, from the first request due to the last.
        "paced_achieved_per_s": round(pac["counted"] / pac["elapsed_s"]),
        "me_saturate_p50_ms": round(me["p50_ms"], 2),
        "me_saturate_p99_ms": round(me["p99_ms"], 2),
        "bare_saturate_p99_ms": round(bare["p99_ms"], 2),
        "errors": me["errors"] + pac["errors"] + bare["errors"],
        "statuses": statuses,
        "server_peak_rss_mb": round(monitor.peak_rss / 2**20),
        **shares(me, "me"),
        "me_cpu_per_server_process": me["cpu_per_server_process"],
        **shares(bare, "bare"),
        "members": args.members,
        "ledger_entries": setup.entries,
        "setup_s": round(setup.setup_s, 1),
        "uvicorn_workers": args.workers,
        "concurrency": args.concurrency,
        "seconds_per_phase": args.seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    # Internal: run as the load generator.
    parser.add_argument("--load", choices=["saturate", "paced"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--merchants-file", dest="audience_file", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.members < 1 or arguments.seconds < 1:
        parser.error("--members and --seconds must be at least 1")
    if arguments.load:
        load_main(arguments)
        sys.exit(0)
    figures = asyncio.run(main(arguments))
    print_figures(figures)
