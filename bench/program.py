"""Evaluations per second of the program's pure rule core, on one core.

Usage: python bench/program.py [--seconds N]

The program is docs/examples/program.toml (6 actions, 6 rewards, 5 challenges, referrals,
4 tiers) with its 3 promotions moved so that all are live; each evaluation is the decision on
one 10-line `order.paid` (`orders.rules.decide_paid_order`: points, intents, qualifying spend,
what the order teaches of its buyer) for a Gold member who has used part of a promotion's cap.
As the baseline, the same run times a bare loop that only builds the orders, so the figure is
the rules' own cost.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stats import print_figures

from pointguard.program.document.validate import parse_program
from pointguard.program.events import OrderLine, OrderPaid
from pointguard.program.orders.earning import Buyer
from pointguard.program.orders.rules import decide_paid_order

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CATEGORIES = ["shoes", "socks", "outlet", "bags", "gift_card", "coats", "hats"]


def realistic_program():  # type: ignore[no-untyped-def]
    document = tomllib.loads(EXAMPLE.read_text())
    for promotion in document["promotions"]:
        promotion["starts_at"] = NOW - timedelta(days=1)
        promotion["ends_at"] = NOW + timedelta(days=1)
        promotion["min_spend_minor"] = 0
    return parse_program(document)


def make_order(n: int, rng: random.Random) -> OrderPaid:
    return OrderPaid(
        event_id=f"wh-{n}",
        member_id=f"c{n % 5000}",
        occurred_at=NOW,
        order_id=str(n),
        currency="EUR",
        shipping_minor=495,
        tax_minor=1900,
        lines=[
            OrderLine(
                line_id=str(i),
                sku=f"SKU-{rng.randrange(50)}",
                category=rng.choice(CATEGORIES),
                quantity=rng.randint(1, 3),
                unit_price_minor=rng.randint(100, 20000),
                discount_minor=rng.choice([0, 100]),
            )
            for i in range(10)
        ],
    )


def timed(seconds: float, step) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    count, started = 0, time.process_time()
    deadline = started + seconds
    while time.process_time() < deadline:
        for _ in range(100):
            step(make_order(count, rng))
            count += 1
    return count, time.process_time() - started


def main(seconds: float) -> dict[str, float]:
    program = realistic_program()
    buyer = Buyer(
        tier="Gold",
        categories_bought=frozenset({"shoes", "socks"}),
        promotion_points={"black-friday": 1500},
    )
    decision = decide_paid_order(make_order(0, random.Random(1)), program, buyer)
    assert decision.intents, "the benchmark order must earn points"
    base_count, base_cpu = timed(seconds / 4, lambda order: None)
    count, cpu = timed(seconds, lambda order: decide_paid_order(order, program, buyer))
    per_eval = cpu / count - base_cpu / base_count
    return {
        "evaluations_per_s": round(1 / per_eval),
        "evaluations_per_s_with_order_building": round(count / cpu),
        "order_building_per_s": round(base_count / base_cpu),
        "us_per_evaluation": round(per_eval * 1e6, 2),
        "promotions_live": len(program.promotions),
        "tiers": len(program.tiers.levels),
        "lines_per_order": 10,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    figures = main(parser.parse_args().seconds)
    print_figures(figures)
