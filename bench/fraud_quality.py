"""How well the fraud guard tells the simulator's attacks from its honest customers.

Usage: python bench/fraud_quality.py --seed S [--customers N] [--days D]

Generates the simulator's stream in-process (`fraud.simulation`, as `pointguard sim generate`
writes it), starts a fresh embedded PostgreSQL (or uses DATABASE_URL) and replays the stream
through the backtest's program and the guard (`fraud.backtest`, as `pointguard fraud backtest`
does), then reports the figures against the labels: ROC and PR AUC, precision at the alert
budget, abusive points held and redeemed, honest events held, and per attack kind the events
before its first hold and the points held.

The figures come twice: `guard`, the guard as it decides, and `rules_only`, the hard rules
alone. The guard is its hard rules today (`model: "none yet"`), so the two are one replay; once
the model exists, `rules_only` is a second replay with the model off, the baseline it must
beat. Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pointguard import db
from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
from pointguard.fraud.backtest.replay import replay
from pointguard.fraud.backtest.report import figures, in_words
from pointguard.fraud.backtest.stream import read_stream
from pointguard.fraud.simulation.stream import StreamSettings, stream_lines
from pointguard.program.document.validate import parse_program

# The figures set side by side, guard against rules only.
HEADLINE = (
    "roc_auc",
    "pr_auc",
    "precision_at_budget",
    "precision_of_holds",
    "held_share",
    "abusive_points_held_share",
    "abusive_points_redeemed",
    "honest_events_held_share",
)
# What says how the run went rather than how the guard did: kept out of the compared figures.
RUN_FIELDS = ("merchant_id", "batches", "upkeep_passes", "seconds")


async def main(seed: int, customers: int, days: int) -> dict[str, Any]:
    began = time.perf_counter()
    settings = StreamSettings(customers=customers, days=days, seed=seed)
    lines = read_stream(line.text for line in stream_lines(settings))
    url = os.environ.get("DATABASE_URL")
    if not url:
        scratch = tempfile.mkdtemp(prefix="pointguard-bench-")
        url = db.scratch_postgres(Path(scratch)).get_uri()
    engine = db.create_engine(db.async_url(url), pool_size=2)
    try:
        await db.migrate(engine)
        done = await replay(engine, lines, parse_program(BACKTEST_PROGRAM))
    finally:
        await engine.dispose()
    found = figures(done)
    in_words(found, print)
    guard = {name: value for name, value in found.items() if name not in RUN_FIELDS}
    rules_only = guard  # the same replay until the model exists (see the module)
    return {
        "seed": seed,
        "customers": customers,
        "days": days,
        "model": "none yet",
        "guard": guard,
        "rules_only": rules_only,
        "replay_seconds": found["seconds"],
        "seconds": round(time.perf_counter() - began, 1),
    }


def table(result: dict[str, Any]) -> None:
    width = max(map(len, HEADLINE))
    print(f"\n{'figure':<{width}}  {'guard':>10}  {'rules_only':>10}   (model: {result['model']})")
    for name in HEADLINE:
        guard, rules = result["guard"][name], result["rules_only"][name]
        print(f"{name:<{width}}  {_cell(guard):>10}  {_cell(rules):>10}")


def _cell(value: object) -> str:
    return "n/a" if value is None else str(value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    result = asyncio.run(main(args.seed, args.customers, args.days))
    table(result)
    print(json.dumps(result, separators=(",", ":")))
