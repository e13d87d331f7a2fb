"""The backtest end to end: a small simulated stream through `pointguard fraud backtest --json`
in a child process on the test database (figures present and sane, the self-referral attack
held, the scratch merchant's ledger intact after); checkouts spent through a program without a
points-plus-cash reward; a stream that is not one refused naming its line; the simulated
reviewers confirming an abusive case and clearing an honest one a day after they opened, and
leaving cases open when switched off or when the stream has no labels."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
from pointguard.fraud.backtest.replay import Spent, replay
from pointguard.fraud.backtest.report import figures
from pointguard.fraud.backtest.stream import read_stream
from pointguard.fraud.cases import CaseStatus, case_queue
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
HONEST = {"abusive": False, "kind": "honest"}


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
    assert found["cases_confirmed"] > 0  # by the reviewers, a day after each case opened
    assert found["cases_cleared"] == 0  # every hold was abusive

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


def _line(n, kind, data, *, at, label=HONEST):
    line = {
        "type": kind,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
        "webhook_id": f"w-{n}",
    }
    return json.dumps(line if label is None else {**line, "label": label})


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


ABUSIVE = {"abusive": True, "kind": "self_referral"}
OPENED = T0 + timedelta(hours=2, minutes=10)  # both pairs' cases, at the alias's first order
REVIEWED = T0 + timedelta(hours=30)  # the first upkeep boundary a day or more after that


def _order(n, member, device, card, *, at, label):
    line = {
        "line_id": "1",
        "sku": "TEE",
        "category": "apparel",
        "quantity": 1,
        "unit_price_minor": 3000,
    }
    data = {
        "customer_id": member,
        "order_id": f"o-{member}",
        "currency": "EUR",
        "lines": [line],
        "device_id": device,
        "payment_fingerprint": card,
    }
    return _line(n, "order.paid", data, at=at, label=label)


def _self_referral(first, alias, *, n, label):
    """`alias` signs up with `first`'s code and device and pays a first order of 30 EUR with
    `first`'s card at `OPENED`: both referral rewards are held (`self_referral`), opening a
    case for each member."""
    device, card = f"dev-{first}", f"fp_{first}"
    first_data = {"customer_id": first, "device_id": device, "own_referral_code": f"c-{first}"}
    alias_data = {"customer_id": alias, "device_id": device, "referral_code": f"c-{first}"}
    return [
        _line(n, "customer.created", first_data, at=T0, label=label),
        _order(n + 1, first, device, card, at=T0 + timedelta(hours=1), label=label),
        _line(n + 2, "customer.created", alias_data, at=T0 + timedelta(hours=2), label=label),
        _order(n + 3, alias, device, card, at=OPENED, label=label),
    ]


def _review(n, member, *, at, label):
    data = {"customer_id": member, "review_id": f"r-{n}", "sku": "TEE", "rating": 5}
    return _line(n, "review.published", data, at=at, label=label)


def _two_rings(*, labelled=True):
    """ann's ring labelled abusive, bob's honest; bob2 reviews just before its case is a day
    old (w-9) and after the reviewers decided (w-10), and so does ann2 (w-11)."""
    abusive, honest = (ABUSIVE, HONEST) if labelled else (None, None)
    return read_stream(
        [
            *_self_referral("ann", "ann2", n=1, label=abusive),
            *_self_referral("bob", "bob2", n=5, label=honest),
            _review(9, "bob2", at=T0 + timedelta(hours=26), label=honest),
            _review(10, "bob2", at=REVIEWED, label=honest),
            _review(11, "ann2", at=REVIEWED, label=abusive),
        ]
    )


async def _cases(engine, merchant):
    """Each member's cases, oldest first, as (status, decided_at, decided_by, froze_member)."""
    async with db.connection(engine) as pg:
        cases = await case_queue(pg, merchant, list(CaseStatus), limit=10)
    found = {}
    for case in sorted(cases, key=lambda case: case.case_id):
        found.setdefault(case.member_id, []).append(
            (case.status, case.decided_at, case.decided_by, case.froze_member)
        )
    return found


def _held_by(done, event_id):
    (decision,) = [d for d in done.decisions if d.event_id == event_id]
    return decision.decided_by if decision.held else None


async def test_reviewers_confirm_an_abusive_case_and_clear_an_honest_one_a_day_after(
    engine, merchant
):
    program = parse_program(BACKTEST_PROGRAM)
    done = await replay(engine, _two_rings(), program, merchant_id=merchant)

    assert (done.cases_cleared, done.cases_confirmed) == (2, 2)
    confirmed = (CaseStatus.CONFIRMED, REVIEWED, "backtest", True)
    cleared = (CaseStatus.CLEARED, REVIEWED, "backtest", False)
    assert await _cases(engine, merchant) == {
        "ann": [confirmed],
        "ann2": [confirmed, (CaseStatus.OPEN, None, None, False)],  # w-11, held as frozen
        "bob": [cleared],
        "bob2": [cleared],
    }
    assert _held_by(done, "w-9") == "member_under_review"  # its case was not a day old yet
    assert _held_by(done, "w-10") is None  # cleared: bob2 is no longer under review
    assert _held_by(done, "w-11") == "member_frozen"
    async with db.connection(engine) as pg:
        ann = await member_balances(pg, merchant, "ann")
        ann2 = await member_balances(pg, merchant, "ann2")
        bob = await member_balances(pg, merchant, "bob")
        assert await seal(pg, merchant) > 0
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems
    # Confirmed: the held referral rewards (500 and 200) are forfeited, and so is what the
    # members' cleared earns still had pending (each order's own 30 points, in its return
    # window); ann2's review, held after the freeze, stays pending.
    assert ann.pending_points == 0
    assert ann2.pending_points == 25
    assert bob.pending_points == 30 + 500  # cleared: let go, pending until the window ends
    found = figures(done)
    assert (found["cases_cleared"], found["cases_confirmed"]) == (2, 2)


async def test_with_no_reviewers_every_case_stays_open(engine, merchant):
    program = parse_program(BACKTEST_PROGRAM)
    done = await replay(engine, _two_rings(), program, merchant_id=merchant, review_after=None)

    assert (done.cases_cleared, done.cases_confirmed) == (0, 0)
    cases = await _cases(engine, merchant)
    assert {member: [c[0] for c in found] for member, found in cases.items()} == {
        member: [CaseStatus.OPEN] for member in ("ann", "ann2", "bob", "bob2")
    }
    assert _held_by(done, "w-10") == "member_under_review"


async def test_a_stream_without_labels_leaves_its_cases_open(engine, merchant):
    program = parse_program(BACKTEST_PROGRAM)
    done = await replay(engine, _two_rings(labelled=False), program, merchant_id=merchant)

    assert (done.cases_cleared, done.cases_confirmed) == (0, 0)
    assert all(
        c[0] == CaseStatus.OPEN
        for found in (await _cases(engine, merchant)).values()
        for c in found
    )
    found = figures(done)
    assert (found["events"], found["unlabelled_events"], found["decisions"]) == (11, 11, 0)


def test_a_review_after_that_is_not_hours_is_refused(database_url, tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_text(_review(1, "ann", at=T0, label=HONEST) + "\n")
    done = backtest(database_url, str(stream), "--review-after", "soon")
    assert done.returncode == 1
    assert done.stderr.startswith("fraud backtest: --review-after must be a number of hours")
