"""The backtest end to end: a small simulated stream through `pointguard fraud backtest --json`
in a child process on the test database (figures present and sane, the self-referral attack
held, the scratch merchant's ledger intact after); checkouts spent through a program without a
points-plus-cash reward; a stream that is not one refused naming its line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
from pointguard.fraud.backtest.replay import Spent, replay
from pointguard.fraud.backtest.stream import read_stream
from pointguard.fraud.simulation.attacks import REFERRAL_MIN_MINOR
from pointguard.fraud.simulation.events import CHECKOUT
from pointguard.fraud.simulation.stream import StreamSettings, stream_lines
from pointguard.ledger import member_balances
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant
from pointguard.program.document.validate import parse_program
from tests.cli_helpers import pointguard

SMALL = StreamSettings(customers=10, days=14, seed=1)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def backtest(database_url, *args):
    return pointguard(database_url, "fraud", "backtest", *args)


async def test_a_small_stream_is_measured_and_its_self_referrals_held(
    database_url, engine, tmp_path
):
    stream = tmp_path / "stream.jsonl"
    texts = [line.text for line in stream_lines(SMALL)]
    stream.write_text("\n".join(texts) + "\n")
    lines = [json.loads(text) for text in texts]

    done = await asyncio.to_thread(backtest, database_url, str(stream), "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)

    assert found["events"] == sum(line["type"] != CHECKOUT for line in lines)
    assert found["abusive_events"] == sum(
        line["label"]["abusive"] for line in lines if line["type"] != CHECKOUT
    )
    assert found["refused_events"] == 0
    assert 0 < found["held_decisions"] < found["decisions"]
    for name in ("roc_auc", "pr_auc", "precision_at_budget", "abusive_points_held_share"):
        assert 0 <= found[name] <= 1, name
    assert found["roc_auc"] > 0.5  # better than a coin
    assert found["precision_of_holds"] == 1.0  # the hard rules hold no honest customer here
    assert found["honest_events_held_share"] == 0.0
    assert found["abusive_points_held"] <= found["abusive_points"]

    attacks = {line["label"]["kind"] for line in lines if line["label"]["abusive"]}
    assert set(found["kinds"]) == attacks
    self_referral = found["kinds"]["self_referral"]
    # Signup, first order, an alias's signup; the alias's order shares the card: held.
    assert self_referral["events_to_detect"] == 3
    assert self_referral["held_by"]["self_referral"] > 0
    assert self_referral["points_held"] > self_referral["points"] / 2
    assert self_referral["points_redeemed"] == 0  # its spend-all checkout was refused
    assert found["checkouts"]["under_review"] >= 1

    async with db.connection(engine) as pg:
        assert await seal(pg, found["merchant_id"]) > 0
        report = await verify_merchant(pg, found["merchant_id"])
    assert report.ok, report.problems

    words = await asyncio.to_thread(backtest, database_url, str(stream))
    assert words.returncode == 0, words.stderr
    assert "ROC AUC" in words.stdout
    assert "self_referral" in words.stdout


def test_the_default_program_rewards_referrals_at_the_simulators_minimum():
    program = parse_program(BACKTEST_PROGRAM)
    assert program.referrals is not None
    assert program.referrals.min_first_order_minor == REFERRAL_MIN_MINOR


def _line(n, kind, data, *, at):
    return json.dumps(
        {
            "type": kind,
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": data,
            "webhook_id": f"w-{n}",
            "label": {"abusive": False, "kind": "honest"},
        }
    )


async def test_checkouts_spend_through_the_ledger_when_the_program_has_no_points_plus_cash(
    engine, merchant
):
    program = parse_program(
        'name = "Plain"\ncurrency = "EUR"\n[earning]\npoints_per_major_unit = "1"\n'
        '[[actions]]\nevent = "signup"\npoints = 100\ndescription = "Welcome"\n'
    )
    lines = read_stream(
        [
            _line(1, "customer.created", {"customer_id": "ann"}, at=T0),
            _line(2, CHECKOUT, {"customer_id": "ann", "points": 60}, at=T0 + timedelta(hours=2)),
            _line(3, CHECKOUT, {"customer_id": "ann", "points": "all"}, at=T0 + timedelta(hours=3)),
            _line(4, CHECKOUT, {"customer_id": "ann", "points": 10}, at=T0 + timedelta(hours=4)),
            _line(5, CHECKOUT, {"customer_id": "bob", "points": "all"}, at=T0 + timedelta(hours=5)),
        ]
    )
    done = await replay(engine, lines, program, merchant_id=merchant)
    assert [(c.spent, c.points) for c in done.checkouts] == [
        (Spent.REDEEMED, 60),
        (Spent.REDEEMED, 40),
        (Spent.SHORT, 10),
        (Spent.SHORT, 0),
    ]
    assert done.upkeep_passes == 4  # an hour boundary crossed before each checkout
    async with db.connection(engine) as pg:
        balances = await member_balances(pg, merchant, "ann")
    assert balances.total_points == 0  # all 100 spent, none left reserved


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not json", "line 1 is not JSON"),
        ('{"type": "order.paid"}', "line 1 is not an object with type"),
        (_line(1, CHECKOUT, {"customer_id": "ann", "points": -3}, at=T0), "line 1: data.points"),
    ],
)
def test_a_stream_that_is_not_one_is_refused_naming_its_line(database_url, tmp_path, text, said):
    stream = tmp_path / "stream.jsonl"
    stream.write_text(text + "\n")
    done = backtest(database_url, str(stream))
    assert done.returncode == 1
    assert done.stderr.startswith(f"fraud backtest: {said}")
    assert done.stdout == ""
