"""What the fraud guard costs the program's apply path, in-process, guard on against off.

Usage: python bench/fraud_speed.py [--seconds N] [--batch B]

Starts a fresh embedded PostgreSQL (or uses DATABASE_URL) and applies batches of B `order.paid`
events (one writer, as one inbox worker does) with `program.apply.apply_events`, alternating in
halves of N seconds between the guard off and on (on: every event carries signals: a device, an
IP, a card and an address, the member's own but for a few percent drawn from small shared pools,
so the identity links, the sharing counts, the holds and the cases all do their work, at about
the rate of holds a real shop sees). Both phases use the
same program and the same kind of events on fresh members, after a warm-up and an ANALYZE.
Reports events per second each way,
their ratio (`applied_with_guard_over_without`), the guard's added latency per batch (p50,
p99) and per event, and what it held.

Then the model alone, in-process (`score_and_learn_us_p50`, `_p99`): the guard's model step
(`model_decision.decide_with_model`: the vector, the trees' and the classifier's scores, the
threshold, and learning) on the features the guard-on phase stored, replayed twice: once to
warm the model and make its classifier ready (with reviewer labels on a fifth of them), once
timed, intent by intent.

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine
from stats import percentile, print_figures

from pointguard import db
from pointguard.fraud.features import IntentFeatures
from pointguard.fraud.guard import Guard
from pointguard.fraud.model import GuardModel
from pointguard.fraud.model_decision import decide_with_model
from pointguard.fraud.policy import GuardPolicy
from pointguard.fraud.rules import CLEAR_SCORE, RULES_CLEARED, GuardDecision, Verdict
from pointguard.fraud.signals import Address, Signals
from pointguard.fraud.vector import feature_vector
from pointguard.program.apply import apply_events
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid

PROGRAM = """
name = "Bench"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
"""
START = datetime(2026, 6, 1, tzinfo=UTC)
NETWORKS, STREETS = 500, 2_000
SHARED_SHARE, SHARED_POOL = 0.03, 200  # a few percent of events use a card or device of a ring
MODEL_INTENTS = 5_000  # stored features the model step is timed on


async def identity_key(pg: object, merchant_id: str) -> bytes:
    return b"bench-identity-key".ljust(32, b".")


def batch(tag: str, n: int, size: int, rng: random.Random, *, signals: bool) -> list[OrderPaid]:
    """`size` orders of distinct new members (a member's events apply in rounds)."""
    at = START + timedelta(seconds=n)
    return [
        OrderPaid(
            event_id=f"{tag}-{n}-{i}",
            member_id=f"{tag}-m{n}-{i}",
            occurred_at=at,
            order_id=f"{tag}-{n}-{i}",
            currency="EUR",
            signals=Signals(
                device_id=_own_or_shared(rng, "dev", f"{tag}-{n}-{i}"),
                ip=f"10.{rng.randrange(NETWORKS) % 250}.{rng.randrange(NETWORKS) % 250}.7",
                payment_fingerprint=_own_or_shared(rng, "card", f"{tag}-{n}-{i}"),
                shipping_address=Address(line1=f"{rng.randrange(STREETS)} Main St", city="X"),
            )
            if signals
            else None,
            lines=[
                OrderLine(
                    line_id="1",
                    sku="S",
                    category="c",
                    quantity=1,
                    unit_price_minor=rng.randint(500, 20_000),
                )
            ],
        )
        for i in range(size)
    ]


def _own_or_shared(rng: random.Random, kind: str, own: str) -> str:
    if rng.random() < SHARED_SHARE:
        return f"{kind}-ring-{rng.randrange(SHARED_POOL)}"
    return f"{kind}-{own}"


async def phase(
    engine: AsyncEngine,
    merchant: str,
    seconds: float,
    size: int,
    tag: str,
    guard: Guard | None,
    latencies: list[float],
) -> int:
    """Apply batches for `seconds`; return how many events."""
    rng = random.Random(tag)
    deadline = time.perf_counter() + seconds
    n = events = 0
    while time.perf_counter() < deadline:
        orders = batch(tag, n, size, rng, signals=guard is not None)
        started = time.perf_counter()
        await db.run_in_transaction(engine, apply_events, merchant, orders, guard=guard)
        latencies.append(time.perf_counter() - started)
        n += 1
        events += len(orders)
    return events


def model_step_timings(stored: list[str]) -> tuple[float, float, bool]:
    """p50 and p99 seconds of the model's step per intent, on a warm model (see the module),
    and whether its classifier was ready (a short run may store too few intents)."""
    features = [msgspec.json.decode(text, type=IntentFeatures) for text in stored]
    policy = GuardPolicy(model_warmup=0)
    ruled = GuardDecision(Verdict.CLEAR, CLEAR_SCORE, RULES_CLEARED, ())
    model = GuardModel()
    for n, intent in enumerate(features):
        decide_with_model(policy, ruled, model, f"warm-{n}", intent)
        if n % 5 == 0:
            model.learn_case(f"case-{n}", [feature_vector(intent)], abusive=n % 25 == 0)
    timings = []
    for n, intent in enumerate(features):
        started = time.perf_counter()
        decide_with_model(policy, ruled, model, f"timed-{n}", intent)
        timings.append(time.perf_counter() - started)
    return percentile(timings, 0.5), percentile(timings, 0.99), model.classifier_ready


async def main(seconds: float, size: int) -> dict[str, float]:
    url = os.environ.get("DATABASE_URL")
    if not url:
        scratch = tempfile.mkdtemp(prefix="pointguard-bench-")
        url = db.scratch_postgres(Path(scratch)).get_uri()
    engine = db.create_engine(db.async_url(url), pool_size=2)
    await db.migrate(engine)
    merchant = f"bench-fraud-{int(time.time())}"
    await db.run_in_transaction(
        engine, save_program, merchant, parse_program(PROGRAM), effective_from=START
    )
    guard = Guard(identity_key)
    # A warm-up of both kinds, then ANALYZE, as autovacuum would have by then on a live server:
    # fresh tables' statistics (a few dozen rows) make the planner scan where it should seek.
    await phase(engine, merchant, seconds / 8, size, "warm-off", None, [])
    await phase(engine, merchant, seconds / 8, size, "warm-on", guard, [])
    async with db.connection(engine) as pg:
        await pg.execute("ANALYZE")
    off: list[float] = []
    on: list[float] = []
    off_events = on_events = 0
    for half in range(4):  # alternate, so that neither gains from going first
        off_events += await phase(engine, merchant, seconds / 4, size, f"off{half}", None, off)
        on_events += await phase(engine, merchant, seconds / 4, size, f"on{half}", guard, on)
    async with db.connection(engine) as pg:
        held = await pg.fetchval(
            "SELECT count(*) FROM fraud_decisions WHERE merchant_id = $1 AND decision = 'hold'",
            merchant,
        )
        decided = await pg.fetchval(
            "SELECT count(*) FROM fraud_decisions WHERE merchant_id = $1", merchant
        )
        stored = await pg.fetch(
            "SELECT features::text AS features FROM fraud_decisions WHERE merchant_id = $1"
            " ORDER BY decided_at, intent_key LIMIT $2",
            merchant,
            MODEL_INTENTS,
        )
    await engine.dispose()
    model_p50, model_p99, classifier_ready = model_step_timings([row["features"] for row in stored])
    off_rate, on_rate = off_events / sum(off), on_events / sum(on)
    return {
        "applied_per_s_without_guard": round(off_rate),
        "applied_per_s_with_guard": round(on_rate),
        "applied_with_guard_over_without": round(on_rate / off_rate, 3),
        "batch_p50_ms_without_guard": round(percentile(off, 0.5) * 1000, 2),
        "batch_p50_ms_with_guard": round(percentile(on, 0.5) * 1000, 2),
        "batch_p99_ms_without_guard": round(percentile(off, 0.99) * 1000, 2),
        "batch_p99_ms_with_guard": round(percentile(on, 0.99) * 1000, 2),
        "guard_us_per_event": round((1 / on_rate - 1 / off_rate) * 1e6, 1),
        "score_and_learn_us_p50": round(model_p50 * 1e6, 1),
        "score_and_learn_us_p99": round(model_p99 * 1e6, 1),
        "model_classifier_ready": classifier_ready,
        "batch_size": size,
        "decisions": decided,
        "held": held,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    figures = asyncio.run(main(args.seconds, args.batch))
    print_figures(figures)
