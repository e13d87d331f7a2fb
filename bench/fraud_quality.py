"""How well the fraud guard tells the simulator's attacks from its honest customers, and how
much its model adds to the hard rules.

Usage: python bench/fraud_quality.py --seed S [--customers N] [--days D] [--review-after H]

Generates the simulator's stream in-process (`fraud.simulation`, as `pointguard sim generate`
writes it), starts a fresh embedded PostgreSQL (or uses DATABASE_URL) and replays the stream
through the backtest's program and the guard (`fraud.backtest`, as `pointguard fraud backtest`
does), with simulated reviewers deciding each case `--review-after` hours (default 24; `none`
or 0: nobody reviews) after it opened. It reports the figures against the labels: ROC and PR
AUC, precision at the alert budget, abusive points held and redeemed, honest events held,
cases cleared and confirmed, and per attack kind the events before its first hold and the
points held.

The stream is replayed twice on the same database, each time on a scratch merchant of its own:
`guard`, the guard as the program ships it (hard rules and model), and `rules_only`, the same
program with `[guard] model = false`, the baseline the model must beat. Prints each replay in
words, a table side by side, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from pointguard import db
from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
from pointguard.fraud.backtest.replay import replay
from pointguard.fraud.backtest.report import figures, in_words
from pointguard.fraud.backtest.reviewers import REVIEW_AFTER, review_after_of
from pointguard.fraud.backtest.stream import read_stream
from pointguard.fraud.model import MODEL_DESCRIPTION
from pointguard.fraud.simulation.stream import StreamSettings, stream_lines
from pointguard.program.document.schema import Program
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


async def main(
    seed: int, customers: int, days: int, review_after: timedelta | None
) -> dict[str, Any]:
    began = time.perf_counter()
    settings = StreamSettings(customers=customers, days=days, seed=seed)
    lines = read_stream(line.text for line in stream_lines(settings))
    program = parse_program(BACKTEST_PROGRAM)
    programs = {"guard": program, "rules_only": _without_model(program)}
    url = os.environ.get("DATABASE_URL")
    if not url:
        scratch = tempfile.mkdtemp(prefix="pointguard-bench-")
        url = db.scratch_postgres(Path(scratch)).get_uri()
    engine = db.create_engine(db.async_url(url), pool_size=2)
    found: dict[str, dict[str, Any]] = {}
    try:
        await db.migrate(engine)
        for name, document in programs.items():
            done = await replay(engine, lines, document, review_after=review_after)
            found[name] = figures(done)
            print(f"\n{name}:")
            in_words(found[name], print)
    finally:
        await engine.dispose()
    compared = {
        name: {field: value for field, value in figures_of.items() if field not in RUN_FIELDS}
        for name, figures_of in found.items()
    }
    return {
        "seed": seed,
        "customers": customers,
        "days": days,
        "review_after_hours": None if review_after is None else review_after / timedelta(hours=1),
        "model": MODEL_DESCRIPTION,
        **compared,
        "replay_seconds": {name: figures_of["seconds"] for name, figures_of in found.items()},
        "seconds": round(time.perf_counter() - began, 1),
    }


def _without_model(program: Program) -> Program:
    """The same program with the guard's model off: its hard rules alone decide."""
    return msgspec.structs.replace(
        program, guard=msgspec.structs.replace(program.guard, model=False)
    )


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
    parser.add_argument(
        "--review-after",
        type=review_after_of,
        default=REVIEW_AFTER,
        metavar="HOURS",
        help="reviewers decide each case this many hours after it opened (none or 0: never)",
    )
    args = parser.parse_args()
    result = asyncio.run(main(args.seed, args.customers, args.days, args.review_after))
    table(result)
    print(json.dumps(result, separators=(",", ":")))
