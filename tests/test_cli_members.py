"""Seeing merchants and members at the command line, and unknown merchants refused, in a child
process on the test database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from pointguard.ledger import operations as ops
from pointguard.plugin.merchants import create_merchant
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid
from tests.cli_helpers import pointguard
from tests.test_upkeep import PROGRAM  # tiers Member and VIP (from 100 EUR), 14-day window


def test_a_created_merchant_is_found_again_by_list_and_show(database_url):
    created = pointguard(database_url, "merchant", "create", "Lost Output Shop", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert "never sign with it" in made["about"]["outbound_webhook_secret"]
    assert "signs its webhooks to us" in made["about"]["webhook_secret"]
    shop = made["merchant_id"]

    listed = pointguard(database_url, "merchant", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [found] = [m for m in json.loads(listed.stdout) if m["merchant_id"] == shop]
    assert (found["name"], found["endpoint_url"]) == ("Lost Output Shop", None)
    assert (
        f"{shop}  Lost Output Shop  (since " in pointguard(database_url, "merchant", "list").stdout
    )

    shown = json.loads(pointguard(database_url, "merchant", "show", shop, "--json").stdout)
    assert (shown["name"], shown["program"], shown["members"]) == ("Lost Output Shop", None, 0)
    assert shown["active_credentials"]["inbound_secret"] == 1
    text = pointguard(database_url, "merchant", "show", shop).stdout
    assert f"merchant {shop}\n  name: Lost Output Shop\n" in text
    assert made["webhook_secret"] not in text + json.dumps(shown)  # secrets are never shown


async def test_member_show_prints_balances_tier_pending_and_entries(run, merchant, database_url):
    now = datetime.now(UTC)
    await run(create_merchant, os.urandom(32), "Member Shop", merchant_id=merchant)
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=now - timedelta(1))
    line = OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=20000)
    order = OrderPaid(
        event_id="w1", member_id="ann", occurred_at=now, order_id="77", currency="EUR", lines=[line]
    )
    await run(apply_event, merchant, order)
    await run(
        ops.earn, merchant, "ann", 25, key="gift", description="25 points welcome gift", source="t"
    )

    shown = pointguard(database_url, "member", "show", merchant, "ann", "--json")
    assert shown.returncode == 0, shown.stderr
    member = json.loads(shown.stdout)
    assert (member["available_points"], member["pending_points"], member["tier"]) == (
        25,
        200,
        "VIP",
    )
    [pending] = member["pending"]
    release_day = (now + timedelta(days=14)).date().isoformat()
    assert (pending["points"], pending["release_at"][:10], pending["held"]) == (
        200,
        release_day,
        False,
    )
    newest = member["entries"][0]
    assert (newest["description"], newest["available_points"]) == ("25 points welcome gift", 25)

    text = pointguard(database_url, "member", "show", merchant, "ann").stdout
    assert f"ann at {merchant}: 25 points available, 200 pending, 0 reserved; tier VIP" in text
    assert f"  200 points, released on {release_day}: " in text
    assert "+25 available" in text and "25 points welcome gift" in text

    nobody = pointguard(database_url, "member", "show", merchant, "bob")
    assert (nobody.returncode, nobody.stderr) == (
        1,
        f"merchant {merchant!r} has no member 'bob'\n",
    )


async def test_unknown_merchants_and_display_names_are_refused(run, merchant, database_url):
    await run(create_merchant, os.urandom(32), "Refusing Shop", merchant_id=merchant)
    for command in (
        ("merchant", "show", "Refusing Shop"),
        ("member", "show", "Refusing Shop", "ann"),
        ("ledger", "verify", "--merchant", "Refusing Shop"),
        ("upkeep", "--merchant", "Refusing Shop"),
        ("outbox", "dead", "--merchant", "Refusing Shop"),
        ("outbox", "replay", "Refusing Shop", "--all"),
    ):
        refused = pointguard(database_url, *command)
        assert (refused.returncode, refused.stderr) == (1, "no merchant 'Refusing Shop'\n"), command
        assert refused.stdout == ""
    nothing = pointguard(database_url, "outbox", "dead", "--merchant", merchant)
    assert nothing.stdout == f"no dead deliveries for merchant {merchant}\n"


async def test_upkeep_for_one_merchant_prints_words(run, merchant, database_url):
    await run(ops.earn, merchant, "ann", 10, key="o1", description="10 points", source="test")
    done = pointguard(database_url, "upkeep", "--merchant", merchant)
    assert done.returncode == 0, done.stderr
    assert f"{merchant} entries sealed: 1\n" in done.stdout
    assert f"{merchant} reservations voided: 0\n" in done.stdout
    assert "(" not in done.stdout  # no Python reprs
    assert all(line.startswith(f"{merchant} ") for line in done.stdout.splitlines())


def test_serve_help_shows_its_defaults(database_url):
    shown = pointguard(database_url, "serve", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "127.0.0.1" in shown.stdout and "8000" in shown.stdout


async def test_a_webhook_signed_with_the_outbound_secret_is_told_which_secret_to_use(
    served, run, signed_webhook
):
    app, client = served
    made = await run(create_merchant, app.state.secret_key, "Mixed-up Shop")
    body, headers = signed_webhook(made.outbound_webhook_secret, "msg_wrong_secret")
    answer = await client.post(f"/webhooks/{made.merchant_id}", content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert "sign v1 with `webhook_secret`" in answer.text
    assert "not `outbound_webhook_secret`" in answer.text
