"""Reviewing the fraud guard's cases at the command line, in a child process on the test
database: the queue, one case with its held reward and linked member, and each decision carried
to the member's balances; a case decided twice, an unknown case and an unknown merchant refused
with one line and nothing changed."""

from __future__ import annotations

import json

import pytest

from pointguard.fraud.cases import load_open_cases
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.referrals.records import referral_code
from tests.cli_helpers import pointguard
from tests.fraud.test_guard_pipeline import (
    AFTER_RETURN_WINDOW,
    DAY,
    PROGRAM,
    T0,
    guarded,
    order,
    signup,
)

pytestmark = pytest.mark.calendar  # fixed dates, each decision given --at

AT = AFTER_RETURN_WINDOW.isoformat()


@pytest.fixture
async def held(run, merchant):
    """Bob, referred by Ann, pays with Ann's card: both referral rewards are held, each
    member's in a case of their own. The orders' own points are released; the held are not."""
    from pointguard.fraud.signals import Signals

    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - 100 * DAY)
    card = Signals(payment_fingerprint="card-A")
    await guarded(run, merchant, order("ann", 1, T0, signals=card))
    code = await run(referral_code, merchant, "ann")
    await guarded(run, merchant, signup("bob", T0 + DAY, code))
    await guarded(run, merchant, order("bob", 1, T0 + 2 * DAY, signals=card))
    await run(ops.release_due, merchant, now=AFTER_RETURN_WINDOW)
    return await run(load_open_cases, merchant, ["ann", "bob"])


async def balances(run, merchant, member):
    shown = await run(member_balances, merchant, member)
    return shown.available_points, shown.pending_points


def fraud(database_url, *args):
    return pointguard(database_url, "fraud", *args)


async def test_cases_lists_the_queue_and_show_the_held_reward_and_linked_member(
    run, merchant, held, database_url
):
    listed = fraud(database_url, "cases", merchant, "--json")
    assert listed.returncode == 0, listed.stderr
    queue = json.loads(listed.stdout)
    assert [(c["case_id"], c["member_id"], c["status"]) for c in queue] == sorted(
        [(held["ann"], "ann", "open"), (held["bob"], "bob", "open")]
    )
    text = fraud(database_url, "cases", merchant).stdout
    assert f"case {held['bob']}  open       member bob, opened 2026-03-04 10:00+00:00\n" in text

    shown = fraud(database_url, "show", merchant, str(held["bob"]), "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["case"]["status"] == "open" and detail["case"]["decided_by"] is None
    [reward] = detail["held"]
    assert (reward["points"], reward["source"], reward["rule"]) == (
        200,
        "referral:referee",
        "self_referral",
    )
    assert reward["reasons"] == ["the referrer and the referee share a payment card"]
    assert detail["linked"] == [
        {"member_id": "ann", "shared": ["card"], "open_case_id": held["ann"], "frozen": False}
    ]
    words = fraud(database_url, "show", merchant, str(held["bob"])).stdout
    assert f"case {held['bob']} at {merchant}: open, member bob, opened 2026-03-04" in words
    assert "  200 points, referral:referee, held by self_referral (score " in words
    assert "    - the referrer and the referee share a payment card\n" in words
    assert f"  ann: shares card; open case {held['ann']}\n" in words


async def test_clear_releases_and_a_second_decision_is_refused(run, merchant, held, database_url):
    assert await balances(run, merchant, "bob") == (50, 200)
    cleared = fraud(
        database_url, "clear", merchant, str(held["bob"]), "--reviewer", "rita", "--at", AT
    )
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout == (
        f"case {held['bob']} (bob) cleared by rita: 200 points released now\n"
    )
    assert await balances(run, merchant, "bob") == (250, 0)

    again = fraud(
        database_url, "clear", merchant, str(held["bob"]), "--reviewer", "sam", "--at", AT
    )
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == (
        f"review case {held['bob']} is already cleared (by rita at 2026-03-22 10:00:00+00:00)\n"
    )
    assert await balances(run, merchant, "bob") == (250, 0)
    confirmed_late = fraud(
        database_url, "confirm", merchant, str(held["bob"]), "--reviewer", "sam", "--freeze"
    )
    assert confirmed_late.returncode == 1 and "already cleared" in confirmed_late.stderr
    assert await balances(run, merchant, "bob") == (250, 0)

    listed = json.loads(
        fraud(database_url, "cases", merchant, "--status", "cleared", "--json").stdout
    )
    assert [(c["case_id"], c["decided_by"], c["decided_at"]) for c in listed] == [
        (held["bob"], "rita", "2026-03-22T10:00:00Z")
    ]


async def test_escalate_then_confirm_with_freeze_forfeits_and_freezes(
    run, merchant, held, database_url, assert_ledger_intact
):
    case = str(held["ann"])
    escalated = fraud(
        database_url, "escalate", merchant, case, "--reviewer", "rita", "--at", AT, "--json"
    )
    assert escalated.returncode == 0, escalated.stderr
    assert json.loads(escalated.stdout)["case"]["status"] == "escalated"
    assert "escalated" in fraud(database_url, "cases", merchant).stdout

    confirmed = fraud(
        database_url,
        "confirm",
        merchant,
        case,
        "--reviewer",
        "sue",
        "--note",
        "one card, two accounts",
        "--freeze",
        "--void-referrals",
        "--at",
        AT,
    )
    assert confirmed.returncode == 0, confirmed.stderr
    # Ann's one referral, bob's, was the held one: forfeited already, nothing more to withdraw.
    assert confirmed.stdout == (
        f"case {case} (ann) confirmed by sue: 500 pending points forfeited; member ann frozen;"
        " 0 referral points withdrawn\n"
    )
    assert await balances(run, merchant, "ann") == (50, 0)
    shown = json.loads(fraud(database_url, "show", merchant, str(held["bob"]), "--json").stdout)
    assert shown["linked"] == [
        {"member_id": "ann", "shared": ["card"], "open_case_id": None, "frozen": True}
    ]
    text = fraud(database_url, "show", merchant, case).stdout
    assert text.startswith(
        f"case {case} at {merchant}: confirmed, member ann, opened 2026-03-04 10:00+00:00;"
        " decided by sue at 2026-03-22 10:00+00:00, member frozen: one card, two accounts\n"
    )
    await assert_ledger_intact()


async def test_unknown_cases_and_merchants_are_refused(run, merchant, held, database_url):
    for command in (("show",), ("clear", "--reviewer", "rita")):
        refused = fraud(database_url, command[0], merchant, "999999999", *command[1:])
        assert (refused.returncode, refused.stdout) == (1, ""), command
        assert refused.stderr == f"merchant {merchant!r} has no review case 999999999\n"
    nobody = fraud(database_url, "cases", "no-such-shop")
    assert (nobody.returncode, nobody.stderr) == (1, "no merchant 'no-such-shop'\n")
    none_confirmed = fraud(database_url, "cases", merchant, "--status", "confirmed")
    assert none_confirmed.stdout == f"no confirmed cases for merchant {merchant}\n"
