"""Ledger throughput and latency, with pgbench on the same server as the baseline.

Usage: python bench/ledger.py [--seconds N]

Starts a fresh embedded PostgreSQL (or uses DATABASE_URL), then runs, each for N seconds:
  batch100     4 writers, 100 two-posting earn entries per transaction
  single       8 writers, one entry per transaction, all on one merchant
  single_ten   8 writers, one entry per transaction, spread over ten merchants
               (single and single_ten alternate in halves of N seconds)
  pgbench      pgbench's built-in tpcb-like script, 8 clients, same server
  reserve      4 writers, reserve then capture, latency per pair
  seal/verify  sealing, then verifying, everything the one-merchant scenarios wrote
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from stats import percentile, print_figures

from pointguard import db
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import seal_all
from pointguard.ledger.posting import post_entries
from pointguard.ledger.verify import verify_merchant

MEMBERS = 20_000
PGBENCH_CLIENTS = 8
PGBENCH_SCALE = 10


async def drive(
    engine: AsyncEngine, writers: int, seconds: float, step: Callable[[int, int], Awaitable[int]]
) -> tuple[float, list[float]]:
    """Run `step(writer, n)` in a loop on `writers` tasks; return (units per second, latencies)."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    done = [0] * writers

    async def writer(w: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            done[w] += await step(w, n)
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sum(done) / (time.perf_counter() - started), latencies


def earn_step(engine: AsyncEngine, merchants: list[str], per_txn: int, tag: str):
    async def step(w: int, n: int) -> int:
        merchant = random.choice(merchants)
        entries = [
            ops.earn_entry(
                merchant,
                f"c{random.randrange(MEMBERS)}",
                random.randint(1, 500),
                key=f"{tag}-{w}-{n}-{i}",
                description="Points for order",
                source="bench",
            )
            for i in range(per_txn)
        ]
        await db.in_transaction(engine, lambda pg: post_entries(pg, entries), begin=False)
        return per_txn

    return step


def reserve_capture_step(engine: AsyncEngine, merchant: str):
    now = datetime.now(UTC)

    async def step(w: int, n: int) -> int:
        member = f"c{random.randrange(MEMBERS)}"
        hold = await db.run_in_transaction(
            engine,
            ops.reserve,
            merchant,
            member,
            5,
            key=f"r-{w}-{n}",
            description="Checkout",
            source="bench",
            now=now,
            timeout_s=900,
        )
        await db.run_in_transaction(
            engine, ops.capture, merchant, hold.entry_id, description="Redeemed"
        )
        return 1

    return step


async def prefill(engine: AsyncEngine, merchant: str) -> None:
    """Give every member of `merchant` plenty of available points (for reserve/capture)."""
    for start in range(0, MEMBERS, 1000):
        entries = [
            ops.earn_entry(
                merchant, f"c{m}", 1_000_000, key=f"fill-{m}", description="Welcome", source="bench"
            )
            for m in range(start, start + 1000)
        ]
        await db.in_transaction(engine, lambda pg, e=entries: post_entries(pg, e))


async def seal_and_verify(engine: AsyncEngine, merchant: str) -> tuple[float, float, int]:
    """Seal all of `merchant`'s entries, then verify them: (sealed/s, verified/s, entries)."""
    started = time.perf_counter()
    total = await seal_all(engine, merchant)
    seal_s = time.perf_counter() - started
    started = time.perf_counter()
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    if not report.ok:
        raise RuntimeError(f"ledger verify failed after the benchmark: {report.problems}")
    return total / seal_s, report.entries_sealed / (time.perf_counter() - started), total


def pgbench(url: str, seconds: int) -> float:
    from pgserver._commands import POSTGRES_BIN_PATH

    binary = str(POSTGRES_BIN_PATH / "pgbench")
    conninfo = db.libpq_url(url)
    subprocess.run(
        [binary, "-i", "-q", "-s", str(PGBENCH_SCALE), conninfo], check=True, capture_output=True
    )
    out = subprocess.run(
        [binary, "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(seconds), conninfo],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))


async def main(seconds: int) -> dict[str, float]:
    url = os.environ.get("DATABASE_URL")
    scratch = None
    if not url:
        scratch = tempfile.mkdtemp(prefix="pointguard-bench-")
        server = db.scratch_postgres(Path(scratch))
        url = server.get_uri()
    url = db.async_url(url)
    engine = db.create_engine(url, pool_size=8)
    await db.migrate(engine)
    run = f"{int(time.time())}"
    one = [f"bench-{run}-one"]
    ten = [f"bench-{run}-ten{i}" for i in range(10)]

    batch_rate, _ = await drive(engine, 4, seconds, earn_step(engine, one, 100, "b"))
    # One merchant against ten, in alternating halves so that neither gains from going first.
    single_rate = ten_rate = 0.0
    for half in range(2):
        rate, _ = await drive(engine, 8, seconds / 2, earn_step(engine, one, 1, f"s{half}"))
        single_rate += rate / 2
        rate, _ = await drive(engine, 8, seconds / 2, earn_step(engine, ten, 1, f"t{half}"))
        ten_rate += rate / 2
    spend_merchant = f"bench-{run}-spend"
    await prefill(engine, spend_merchant)
    _, pair_latencies = await drive(
        engine, 4, seconds, reserve_capture_step(engine, spend_merchant)
    )
    seal_rate, verify_rate, sealed = await seal_and_verify(engine, one[0])
    await engine.dispose()
    tps = pgbench(url, seconds)

    return {
        "entries_per_s_batch100": round(batch_rate),
        "entries_per_s_single": round(single_rate),
        "entries_per_s_single_ten_merchants": round(ten_rate),
        "one_merchant_over_ten_merchants": round(single_rate / ten_rate, 3),
        "pgbench_tps": round(tps),
        "single_over_pgbench": round(single_rate / tps, 3),
        "reserve_capture_p50_ms": round(percentile(pair_latencies, 0.50) * 1000, 2),
        "reserve_capture_p99_ms": round(percentile(pair_latencies, 0.99) * 1000, 2),
        "seal_entries_per_s": round(seal_rate),
        "verify_entries_per_s": round(verify_rate),
        "entries_sealed_and_verified": sealed,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "seconds_per_scenario": seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    figures = asyncio.run(main(parser.parse_args().seconds))
    print_figures(figures)
