"""Webhook ingest end to end: the real server, signed `order.paid` webhooks, inbox to ledger,
measured against a naive endpoint, and with the fraud guard against without it, in the same run.

Usage: python bench/ingest.py [--seconds N] [--pairs P] [--workers W] [--concurrency C]
                              [--merchants M] [--client raw|httpx]

Machines of one kind differ up to 2x in speed, so the figures that matter are ratios to a
baseline measured beside them: `bench/naive_ingest.py`, a minimal Starlette endpoint that
verifies the signature and INSERTs one row per request (a commit each, nothing applied).

Starts a fresh embedded PostgreSQL (or uses DATABASE_URL), migrates, creates M merchants (1 by
default) with the same simple program, starts the naive server (uvicorn with W processes) for
the whole run, and for each PointGuard phase a real server of its own (`pointguard serve
--workers W`: W processes, each with its inbox worker, outbox dispatcher and upkeep), stopped
when the phase's inbox is drained: two PointGuard servers on one database would drain each
other's inbox. A server's start-up is not counted. A separate load process (this file,
`--load`) drives them on 127.0.0.1:

  saturate   C connections, each sending the next webhook as soon as the last is answered,
             1 s of warm-up then N s counted: 202s per second. Three parties take turns in
             each of P rounds (`--pairs`), each going first in turn: the naive server,
             PointGuard, and PointGuard with `POINTGUARD_FRAUD_GUARD=off` (its workers apply
             events without the guard, on the same merchants); the figures are medians over
             the rounds: naive_accepted_per_s, accepted_per_s, applied_per_s,
             accepted_over_naive and applied_over_naive (PointGuard's medians over the naive
             one's), accepted_per_s_without_guard, applied_per_s_without_guard, and
             applied_with_guard_over_without (applied_per_s over applied_per_s_without_guard:
             the share of its applied rate PointGuard keeps with the guard screening every
             event).
  paced      PointGuard (with the guard) alone, on a server warmed by 1 s of saturation
             (drained, not counted), open loop at half the naive server's median rate for N s on
             up to C connections; latency is from each request's scheduled send time to its
             answer, so a server that falls behind is charged for the queueing too: p50_ms,
             p99_ms.

Every request is a distinct `order.paid` (fresh webhook id, one of 50,000 members of its
merchant; the merchants take turns, round-robin across all connections), signed (`v1`,
HMAC-SHA256, with its merchant's secret) just before it is sent, by a small keep-alive HTTP/1.1
client (`--client httpx` uses httpx instead; see loopback_http.py, home of KeepAliveConnection,
for why that is not the default). After each PointGuard phase the bench waits (at most 60 s +
3 s per second of load) for the inbox to drain. applied_per_s is a saturate phase's rows
applied (of all the merchants) divided by the time from the first of them received to the last
applied (`inbox.received_at`, `inbox.applied_at`; applied_at is the start of the worker's batch
transaction, so the last batch's own duration, tens of ms, is not counted). errors counts
answers other than 202 from any server, failed requests (connection errors, timeouts after
10 s), and PointGuard's inbox rows that ended dead or were still pending after the drain.

Also reported: the peak RSS of PointGuard's server with the guard (all its processes
together, sampled every 0.1 s), and, during its saturate phases, the CPU each party (server,
PostgreSQL, load generator) used as a share of the machine and the commonest PostgreSQL wait
events seen in pg_stat_activity.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import naive_ingest
import psutil
from loopback_http import HOST, KeepAliveConnection, free_port
from stats import percentile, print_figures

from pointguard import db
from pointguard.plugin.merchants import create_merchant
from pointguard.plugin.signatures import standard_webhook_headers
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program

THIS_FILE = str(Path(__file__).resolve())
MEMBERS = 50_000
# Server processes (`serve --workers`), each with its own inbox worker. Measured on this 2-core
# machine (server, PostgreSQL and load generator together, --seconds 10):
#   1: accepted 2,925/s, applied 1,490/s, p99 at 1,000/s 43 ms
#   2: accepted 2,298/s, applied 2,366/s, p99 at 1,000/s 37 ms
#   3: accepted 2,551/s, applied 2,492/s, p99 at 1,000/s 53 ms
# With 1, the lone worker coroutine gets what the request handlers leave, so the inbox grows
# under saturation; 2 keeps applying level with accepting and has the best tail latency; 3
# adds a process's memory (~90 MB) and scheduling for no clear gain. 2 is recommended.
DEFAULT_WORKERS = 2
DEFAULT_CONCURRENCY = 32
DEFAULT_PAIRS = 3  # rounds in which the parties take turns; medians over them are reported
# Who is saturated in each round: the naive endpoint, PointGuard, and PointGuard with
# POINTGUARD_FRAUD_GUARD=off.
PARTIES = ("naive", "guarded", "unguarded")
NAIVE_SERVER = str(Path(__file__).resolve().parent / "naive_ingest.py")
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0  # and DRAIN_S_PER_LOAD_S more per second of load
DRAIN_S_PER_LOAD_S = 3.0
STOP_TIMEOUT_S = 10.0
SAMPLE_INTERVAL_S = 0.1
PROGRAM = """
name = "Bench"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
"""


# ---------------------------------------------------------------------------------------------
# The load generator (a separate process: `python bench/ingest.py --load saturate|paced ...`)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A merchant the load is sent to: its webhook path and inbound secret."""

    path: str
    secret: str


def read_targets(merchants_file: str) -> list[Target]:
    """The merchants written by `write_targets` (ids and secrets in a file, not on the command
    line or in the environment: a hundred secrets fit neither well)."""
    merchants = json.loads(Path(merchants_file).read_text())
    return [Target(f"/webhooks/{m['merchant_id']}", m["secret"]) for m in merchants]


def write_targets(path: Path, merchants: list[Any]) -> Path:
    """In the scratch directory, which only its owner can read (`tempfile.mkdtemp`)."""
    path.write_text(
        json.dumps([{"merchant_id": m.merchant_id, "secret": m.webhook_secret} for m in merchants])
    )
    return path


def order_paid(order_id: str) -> bytes:
    amount = random.randint(500, 20_000)
    return json.dumps(
        {
            "type": "order.paid",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "order_id": order_id,
                "customer_id": f"c{random.randrange(MEMBERS)}",
                "currency": "EUR",
                "lines": [
                    {
                        "line_id": "1",
                        "sku": f"SKU-{amount % 97}",
                        "category": "shoes",
                        "quantity": 1,
                        "unit_price_minor": amount,
                    }
                ],
                "device_id": f"d-{random.randrange(MEMBERS)}",
            },
        }
    ).encode()


def signed_headers(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    return standard_webhook_headers(
        secret=secret,
        private_key=None,
        webhook_id=webhook_id,
        timestamp=int(time.time()),
        body=body,
    )


class HttpxClient:
    """The same through one httpx.AsyncClient (its own pool), for comparison."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> int:
        response = await self.shared.post(path, content=body, headers=headers)
        return int(response.status_code)

    def close(self) -> None:
        pass


@dataclass
class LoadResult:
    counted: int = 0  # 202s completed inside the counted window
    sent: int = 0
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0  # from the first request due to the last answer


@contextlib.asynccontextmanager
async def clients(kind: str, port: int, count: int) -> AsyncIterator[list[Any]]:
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(
            base_url=f"http://{HOST}:{port}", limits=limits, timeout=REQUEST_TIMEOUT_S
        ) as shared:
            yield [HttpxClient(shared) for _ in range(count)]
        return
    made = [KeepAliveConnection(port) for _ in range(count)]
    try:
        yield made
    finally:
        for client in made:
            client.close()


async def send_one(client: Any, target: Target, webhook_id: str, result: LoadResult) -> bool:
    body = order_paid(webhook_id)
    headers = signed_headers(target.secret, webhook_id, body)
    result.sent += 1
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status = await client.post(target.path, headers, body)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        client.close()
        result.errors += 1
        result.statuses[type(error).__name__] += 1
        return False
    result.statuses[str(status)] += 1
    if status != 202:
        result.errors += 1
        return False
    return True


# Sends one request on a connection and records it in the result: (connection, the request's
# unique key, result) → answered as hoped. `saturate` and `paced` drive it; each bench says what
# a request is (here a signed webhook; bench/graphql.py's a query).
Send = Callable[[Any, str, LoadResult], Awaitable[bool]]


async def saturate(made: list[Any], seconds: float, send: Send) -> LoadResult:
    """Each connection of `made` sends the next request as soon as the last is answered:
    WARMUP_S of warm-up, then `seconds` counted."""
    result = LoadResult()
    loop = asyncio.get_running_loop()
    start = loop.time()
    counted_from, end = start + WARMUP_S, start + WARMUP_S + seconds

    async def connection(w: int, client: Any) -> None:
        n = 0
        while loop.time() < end:
            sent_at = loop.time()
            ok = await send(client, f"{w}-{n}", result)
            done = loop.time()
            n += 1
            if ok and counted_from <= done <= end:
                result.counted += 1
                result.latencies_ms.append((done - sent_at) * 1000)

    await asyncio.gather(*(connection(w, c) for w, c in enumerate(made)))
    result.elapsed_s = loop.time() - start
    return result


async def paced(made: list[Any], seconds: float, rate: float, send: Send) -> LoadResult:
    """Open loop: request i is due at start + i / rate whatever happened to the others; it
    waits for a free connection of `made` if all are busy, and that wait counts in its
    latency."""
    result = LoadResult()
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Any] = asyncio.Queue()
    for client in made:
        idle.put_nowait(client)

    async def one(i: int, due: float) -> None:
        client = await idle.get()
        try:
            ok = await send(client, str(i), result)
        finally:
            idle.put_nowait(client)
        if ok:
            result.counted += 1
            result.latencies_ms.append((loop.time() - due) * 1000)

    tasks = []
    start = loop.time() + 0.05
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    result.elapsed_s = loop.time() - start
    return result


def print_load_result(result: LoadResult, started: float) -> None:
    """The load process's answer to `run_load`: one JSON line, with its own CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "counted": result.counted,
                "sent": result.sent,
                "errors": result.errors,
                "statuses": dict(result.statuses),
                "latencies_ms": result.latencies_ms,
                "started": started,
                "elapsed_s": result.elapsed_s,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        )
    )


def load_main(args: argparse.Namespace) -> None:
    turn = itertools.cycle(read_targets(args.merchants_file))  # the merchants take turns

    def send(client: Any, key: str, result: LoadResult) -> Awaitable[bool]:
        return send_one(client, next(turn), f"{args.tag}-{key}", result)

    async def load() -> LoadResult:
        async with clients(args.client, args.port, args.concurrency) as made:
            if args.load == "saturate":
                return await saturate(made, args.seconds, send)
            return await paced(made, args.seconds, args.rate, send)

    started = time.time()
    print_load_result(asyncio.run(load()), started)


# ---------------------------------------------------------------------------------------------
# The bench: database, server, phases, figures
# ---------------------------------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def total(before: Any, after: Any) -> float:
    return float(sum(after) - sum(before))


def busy(before: Any, after: Any) -> float:
    idle = (after.idle - before.idle) + (after.iowait - before.iowait)
    return float(1 - idle / total(before, after))


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU used by these processes, and by their children that have exited and been reaped."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class Monitor:
    """Samples the RSS of PointGuard's server while `server_pid` is set (only while one with the
    guard is up), and pg_stat_activity's wait events while `waits_on` is set."""

    def __init__(self, engine: Any) -> None:
        self.server_pid: int | None = None
        self.engine = engine
        self.peak_rss = 0
        self.waits_on = False
        self.waits: Counter[str] = Counter()
        self.wait_samples = 0

    async def run(self) -> None:
        async with db.connection(self.engine) as pg:
            while True:
                rss = 0
                for process in tree(self.server_pid) if self.server_pid else []:
                    with contextlib.suppress(psutil.Error):
                        rss += process.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
                if self.waits_on:
                    rows = await pg.fetch(
                        "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w"
                        " FROM pg_stat_activity WHERE state = 'active' AND backend_type ="
                        " 'client backend' AND pid <> pg_backend_pid()"
                    )
                    self.waits.update(r["w"] for r in rows)
                    self.wait_samples += 1
                await asyncio.sleep(SAMPLE_INTERVAL_S)


async def run_load(
    mode: str, port: int, merchants_file: Path, options: list[str], script: str = THIS_FILE
) -> dict[str, Any]:
    """`script --load mode` (a bench file run as the load generator) against `port`; its
    answer (`print_load_result`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        "--load",
        mode,
        "--port",
        str(port),
        "--merchants-file",
        str(merchants_file),
        *options,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator ({mode}) exited with {process.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


SELECT_INBOX_STATE = """
SELECT count(*) FILTER (WHERE status = 'applied') AS applied,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status NOT IN ('applied', 'pending')) AS other,
       min(received_at) AS first_received, max(applied_at) AS last_applied
FROM inbox WHERE merchant_id = ANY($1::text[]) AND webhook_id LIKE $2
"""


async def drain(engine: Any, merchants: list[str], tag: str, seconds: int) -> dict[str, Any]:
    """Wait (bounded) until none of this phase's rows are pending; return the inbox figures."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + DRAIN_S_PER_LOAD_S * seconds
    async with db.connection(engine) as pg:
        while True:
            row = dict(await pg.fetchrow(SELECT_INBOX_STATE, merchants, f"{tag}-%"))
            if row["pending"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    span = (
        (row["last_applied"] - row["first_received"]).total_seconds()
        if row["last_applied"] and row["first_received"]
        else float("nan")
    )
    row["applied_per_s"] = row["applied"] / span if span > 0 else float("nan")
    return row


@contextlib.asynccontextmanager
async def embedded_database() -> AsyncIterator[tuple[str, Path]]:
    scratch = Path(tempfile.mkdtemp(prefix="pointguard-bench-ingest-"))
    try:
        url = os.environ.get("DATABASE_URL")
        if url:
            yield url, scratch
            return
        (scratch / "pg").mkdir()
        server = db.scratch_postgres(scratch / "pg")
        try:
            yield server.get_uri(), scratch
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pointguard_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pointguard.cli",
        "serve",  # uvicorn, as operators run it (see pointguard/serving.py)
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def naive_command(port: int, workers: int) -> list[str]:
    return [NAIVE_SERVER, "--host", HOST, "--port", str(port), "--workers", str(workers)]


@contextlib.asynccontextmanager
async def server_process(
    command: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A server (PointGuard's or the naive baseline's) until the block ends, then stopped with
    its worker processes."""
    if command[0] == NAIVE_SERVER:
        command = [sys.executable, *command]
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=sink, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield process
    finally:
        children = tree(process.pid)[1:]
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.wait(timeout=STOP_TIMEOUT_S)
            with contextlib.suppress(psutil.Error):
                child.kill()


async def wait_ready(
    port: int, process: asyncio.subprocess.Process, log: Path, path: str = "/readyz"
) -> None:
    """Until `path` answers (any status but a 5xx: the naive server has no readiness route,
    so it answers 404 once it listens)."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=2) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    tail = (await asyncio.to_thread(log.read_text))[-3000:]
    raise RuntimeError(f"server not ready in {READY_TIMEOUT_S} s:\n{tail}")


def postgres_processes(backend_pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        postmaster = psutil.Process(backend_pid).parent()
        if postmaster is not None:
            return tree(postmaster.pid)
    return []


@dataclass
class Run:
    """What the phases share: the database, the merchants, the naive server, and what it takes
    to start PointGuard's (a new one for each phase)."""

    args: argparse.Namespace
    engine: Any
    merchant_ids: list[str]
    merchants_file: Path
    tag: str
    env: dict[str, str]
    scratch: Path
    naive_port: int
    backend_pid: int
    monitor: Monitor

    def load_options(self, seconds: int | None = None) -> list[str]:
        a = self.args
        return [
            "--seconds",
            str(a.seconds if seconds is None else seconds),
            "--concurrency",
            str(a.concurrency),
            "--client",
            a.client,
        ]


async def naive_saturate(run: Run, pair: int) -> dict[str, Any]:
    """The naive endpoint saturated, as PointGuard is: its 202s per second."""
    sat = await run_load(
        "saturate",
        run.naive_port,
        run.merchants_file,
        [*run.load_options(), "--tag", f"n{run.tag}-{pair}"],
    )
    return {"accepted_per_s": sat["counted"] / run.args.seconds, "errors": sat["errors"]}


@contextlib.asynccontextmanager
async def pointguard_server(
    run: Run, *, guarded: bool, phase: str
) -> AsyncIterator[tuple[int, int]]:
    """PointGuard's server for one phase, with or without the fraud guard
    (`POINTGUARD_FRAUD_GUARD`), ready, then stopped with its processes when the block ends;
    yields its port and pid. Never two at once: every PointGuard server's workers drain the one
    inbox, so a second would apply the first's webhooks and compete with it."""
    port, log = free_port(), run.scratch / f"pointguard-{phase}.log"
    env = {**run.env, "POINTGUARD_FRAUD_GUARD": "on" if guarded else "off"}
    async with server_process(pointguard_command(port, run.args.workers), env, log) as server:
        await wait_ready(port, server, log)
        run.monitor.server_pid = server.pid if guarded else None
        try:
            yield port, server.pid
        finally:
            run.monitor.server_pid = None


async def pointguard_saturate(run: Run, pair: int, *, guarded: bool) -> dict[str, Any]:
    """PointGuard saturated, with or without the guard, on a server of its own started for the
    phase (its start-up not counted): 202s per second, then (after the drain) rows applied per
    second, and the CPU each party used meanwhile."""
    tag = f"{'s' if guarded else 'u'}{run.tag}-{pair}"
    async with pointguard_server(run, guarded=guarded, phase=tag) as (port, server_pid):
        return await saturate_and_drain(run, port, server_pid, tag, guarded=guarded)


class CpuWatch:
    """The CPU a server's processes and PostgreSQL's use from now until `shares`, and the
    machine's, as shares of the machine (a load process reports its own CPU time)."""

    def __init__(self, server_pid: int, backend_pid: int) -> None:
        self.servers, self.pgs = tree(server_pid), postgres_processes(backend_pid)
        self.before = (cpu_seconds(self.servers), cpu_seconds(self.pgs), time.monotonic())
        self.each_before = [cpu_seconds([p]) for p in self.servers]
        self.machine_before = psutil.cpu_times()

    def shares(self, load_cpu_s: float) -> dict[str, Any]:
        # PostgreSQL's processes listed again: the backends the server's pool opened meanwhile
        # (more merchants, more at once) count too.
        pgs_after = tree(self.pgs[0].pid) if self.pgs else []
        after = (cpu_seconds(self.servers), cpu_seconds(pgs_after), time.monotonic())
        machine = psutil.cpu_times()
        each = [cpu_seconds([p]) - b for p, b in zip(self.servers, self.each_before, strict=True)]
        before, machine_before = self.before, self.machine_before
        wall = after[2] - before[2]
        capacity = wall * (os.cpu_count() or 1)
        return {
            "cpu_share_server": (after[0] - before[0]) / capacity,
            # Of one core, per server process (the supervisor first when there are workers).
            "cpu_per_server_process": [round(c / wall, 2) for c in each],
            "cpu_share_postgres": (after[1] - before[1]) / capacity,
            "cpu_share_load": load_cpu_s / capacity,
            "cpu_share_machine_busy": busy(machine_before, machine),
            "cpu_share_machine_iowait": (machine.iowait - machine_before.iowait)
            / total(machine_before, machine),
        }


async def saturate_and_drain(
    run: Run, port: int, server_pid: int, tag: str, *, guarded: bool
) -> dict[str, Any]:
    """One saturate phase on PointGuard's server (`port`, `server_pid`), then its inbox
    drained. pg_stat_activity's wait events are sampled with the guard only."""
    cpu = CpuWatch(server_pid, run.backend_pid)
    run.monitor.waits_on = guarded
    sat = await run_load("saturate", port, run.merchants_file, [*run.load_options(), "--tag", tag])
    run.monitor.waits_on = False
    shares = cpu.shares(sat["cpu_s"])
    inbox = await drain(run.engine, run.merchant_ids, tag, run.args.seconds)
    return {
        "accepted_per_s": sat["counted"] / run.args.seconds,
        "applied_per_s": inbox["applied_per_s"],
        "errors": sat["errors"],
        "unapplied": inbox["pending"] + inbox["other"],
        "statuses": sat["statuses"],
        "saturate_p50_ms": percentile(sat["latencies_ms"], 0.50),
        "saturate_p99_ms": percentile(sat["latencies_ms"], 0.99),
        **shares,
    }


async def saturate_party(run: Run, party: str, pair: int) -> dict[str, Any]:
    """`party`'s saturate phase in round `pair`."""
    if party == "naive":
        return await naive_saturate(run, pair)
    return await pointguard_saturate(run, pair, guarded=party == "guarded")


async def pointguard_paced(run: Run, rate: int) -> dict[str, Any]:
    """PointGuard with the guard at `rate` requests per second, on a server of its own warmed
    first by WARMUP_S of saturation (drained, not counted), as warm as the saturate phases'
    servers are once their warm-up is over."""
    tag = f"p{run.tag}"
    async with pointguard_server(run, guarded=True, phase=tag) as (port, _):
        warm_up = [*run.load_options(seconds=0), "--tag", f"w{run.tag}"]
        await run_load("saturate", port, run.merchants_file, warm_up)
        await drain(run.engine, run.merchant_ids, f"w{run.tag}", 0)
        pac = await run_load(
            "paced",
            port,
            run.merchants_file,
            [*run.load_options(), "--tag", tag, "--rate", str(rate)],
        )
        inbox = await drain(run.engine, run.merchant_ids, tag, run.args.seconds)
    return {
        **pac,
        "applied_per_s": inbox["applied_per_s"],
        "unapplied": inbox["pending"] + inbox["other"],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"{int(time.time())}"
    key = os.urandom(32)
    async with embedded_database() as (url, scratch):
        engine = db.create_engine(db.async_url(url), pool_size=2)
        await db.migrate(engine)
        created = []
        program = parse_program(PROGRAM)
        for i in range(args.merchants):
            merchant_id = f"bench-{tag}" if args.merchants == 1 else f"bench-{tag}-{i:04d}"
            created.append(
                await db.run_in_transaction(
                    engine, create_merchant, key, f"Bench Shop {i}", merchant_id=merchant_id
                )
            )
            await db.run_in_transaction(
                engine,
                save_program,
                merchant_id,
                program,
                effective_from=datetime(2020, 1, 1, tzinfo=UTC),
            )
        merchants_file = write_targets(scratch / "merchants.json", created)
        async with db.connection(engine) as pg:
            backend_pid = await pg.fetchval("SELECT pg_backend_pid()")
            await naive_ingest.create_table(pg)
        env = {
            **os.environ,
            "DATABASE_URL": db.libpq_url(url),
            "POINTGUARD_SECRET_KEY": base64.b64encode(key).decode(),
            "POINTGUARD_DATA_DIR": str(scratch / "data"),
            # One log line per webhook is an operator's choice (debug), not ingest cost.
            "POINTGUARD_LOG_LEVEL": "warning",
            "NAIVE_DATABASE_URL": db.libpq_url(url),
            "NAIVE_MERCHANTS_FILE": str(merchants_file),
        }
        port, log = free_port(), scratch / "naive.log"
        # The naive server stays up throughout (it has no inbox worker); PointGuard's servers
        # are started one at a time, for one phase each (`pointguard_server`).
        async with server_process(naive_command(port, args.workers), env, log) as naive:
            await wait_ready(port, naive, log, path="/")
            monitor = Monitor(engine)
            sampling = asyncio.create_task(monitor.run())
            run = Run(
                args,
                engine,
                [m.merchant_id for m in created],
                merchants_file,
                tag,
                env,
                scratch,
                port,
                backend_pid,
                monitor,
            )
            try:
                runs: dict[str, list[dict[str, Any]]] = {party: [] for party in PARTIES}
                for pair in range(args.pairs):
                    # Each party goes first in turn, so a drift of the machine's speed during
                    # the run favours none.
                    first = pair % len(PARTIES)
                    for party in PARTIES[first:] + PARTIES[:first]:
                        runs[party].append(await saturate_party(run, party, pair))
                naive_rate = statistics.median(n["accepted_per_s"] for n in runs["naive"])
                paced_rate = max(1, round(naive_rate / 2))
                pac = await pointguard_paced(run, paced_rate)
            finally:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
        await engine.dispose()
    return figures(args, runs, pac, paced_rate, monitor)


def figures(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    pac: dict[str, Any],
    paced_rate: int,
    monitor: Monitor,
) -> dict[str, Any]:
    """The figures: PointGuard's medians over the rounds, over the naive baseline's, and with
    the guard over without it."""

    def median(runs: list[dict[str, Any]], name: str, digits: int = 0) -> float:
        value = statistics.median(r[name] for r in runs)
        return round(value, digits) if digits else round(value)

    naive_runs, pointguard_runs, unguarded_runs = (runs[party] for party in PARTIES)
    naive = median(naive_runs, "accepted_per_s")
    accepted = median(pointguard_runs, "accepted_per_s")
    applied = median(pointguard_runs, "applied_per_s")
    applied_unguarded = median(unguarded_runs, "applied_per_s")
    both = [*pointguard_runs, *unguarded_runs]
    unapplied = sum(r["unapplied"] for r in both) + pac["unapplied"]
    request_errors = sum(r["errors"] for r in [*both, *naive_runs]) + pac["errors"]
    statuses: Counter[str] = Counter(pac["statuses"])
    for r in both:
        statuses.update(r["statuses"])
    waits = ", ".join(
        f"{name} {count / max(1, monitor.wait_samples):.1f}"
        for name, count in monitor.waits.most_common(5)
    )
    return {
        "accepted_over_naive": round(accepted / naive, 2) if naive else float("nan"),
        "applied_over_naive": round(applied / naive, 2) if naive else float("nan"),
        "applied_with_guard_over_without": round(applied / applied_unguarded, 2)
        if applied_unguarded
        else float("nan"),
        "p99_ms": round(percentile(pac["latencies_ms"], 0.99), 2),
        "naive_accepted_per_s": naive,
        "accepted_per_s": accepted,
        "applied_per_s": applied,
        "accepted_per_s_without_guard": median(unguarded_runs, "accepted_per_s"),
        "applied_per_s_without_guard": applied_unguarded,
        "pair_ratios_accepted": [
            round(p["accepted_per_s"] / n["accepted_per_s"], 2) if n["accepted_per_s"] else None
            for p, n in zip(pointguard_runs, naive_runs, strict=True)
        ],
        "naive_runs_per_s": [round(n["accepted_per_s"]) for n in naive_runs],
        "pointguard_runs_per_s": [round(p["accepted_per_s"]) for p in pointguard_runs],
        "pair_ratios_applied_with_guard_over_without": [
            round(p["applied_per_s"] / u["applied_per_s"], 2) if u["applied_per_s"] else None
            for p, u in zip(pointguard_runs, unguarded_runs, strict=True)
        ],
        "p50_ms": round(percentile(pac["latencies_ms"], 0.50), 2),
        "paced_offered_per_s": paced_rate,
        # 202s per second over the paced phase, from the first request due to the last answer.
        "paced_achieved_per_s": round(pac["counted"] / pac["elapsed_s"]),
        "paced_applied_per_s": round(pac["applied_per_s"]),
        "errors": request_errors + unapplied,
        "request_errors": request_errors,
        "inbox_not_applied": unapplied,
        "statuses": dict(statuses),
        "saturate_p50_ms": median(pointguard_runs, "saturate_p50_ms", 2),
        "saturate_p99_ms": median(pointguard_runs, "saturate_p99_ms", 2),
        "cpu_share_server": median(pointguard_runs, "cpu_share_server", 3),
        "cpu_per_server_process": pointguard_runs[-1]["cpu_per_server_process"],
        "cpu_share_postgres": median(pointguard_runs, "cpu_share_postgres", 3),
        "cpu_share_load": median(pointguard_runs, "cpu_share_load", 3),
        "cpu_share_machine_busy": median(pointguard_runs, "cpu_share_machine_busy", 3),
        "cpu_share_machine_iowait": median(pointguard_runs, "cpu_share_machine_iowait", 3),
        "pg_active_backends_by_wait": waits,
        "server_peak_rss_mb": round(monitor.peak_rss / 2**20),
        "uvicorn_workers": args.workers,
        "concurrency": args.concurrency,
        "merchants": args.merchants,
        "client": args.client,
        "pairs": args.pairs,
        "seconds_per_phase": args.seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        help="rounds of saturate phases: naive, PointGuard, PointGuard without the guard",
    )
    parser.add_argument(
        "--merchants", type=int, default=1, help="merchants the load is spread over"
    )
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    # Internal: run as the load generator.
    parser.add_argument("--load", choices=["saturate", "paced"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--merchants-file", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.merchants < 1 or arguments.pairs < 1:
        parser.error("--merchants and --pairs must be at least 1")
    if arguments.load:
        load_main(arguments)
        sys.exit(0)
    figures = asyncio.run(main(arguments))
    print_figures(figures)
