"""The `pointguard` command as an operator runs it, in a child process, on the test database."""

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pointguard import db
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import MAX_ATTEMPTS, MAX_RETRY_S, deliver_merchant
from pointguard.plugin.merchants import create_merchant
from pointguard.program.outbox import write_events
from tests.cli_helpers import pointguard

EXAMPLE_PROGRAM = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"


async def test_ledger_verify_passes_then_reports_a_tampered_posting(
    engine, run, merchant, database_url
):
    earned = await run(
        ops.earn, merchant, "ann", 100, key="o1", description="100 points", source="test"
    )
    await run(ops.earn, merchant, "ann", 20, key="o2", description="20 points", source="test")
    await run(seal, merchant)

    ok = pointguard(database_url, "ledger", "verify", "--merchant", merchant)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"merchant {merchant}: 2 sealed entries, ok" in ok.stdout

    async with db.connection(engine) as pg, pg.transaction():
        # What an attacker with superuser rights could do: bypass the append-only triggers.
        await pg.execute("SET LOCAL session_replication_role = replica")
        await pg.execute(
            "UPDATE ledger_postings SET amount_points = amount_points + 1000"
            " WHERE merchant_id = $1 AND entry_id = $2 AND account_id > 0",
            merchant,
            earned.entry_id,
        )

    broken = pointguard(database_url, "ledger", "verify", "--merchant", merchant)
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout
    assert f"entry {earned.entry_id}: 2 postings summing to 1000" in broken.stdout
    assert "stored 120, postings say 1120" in broken.stdout
    assert f"hash chain: entry {earned.entry_id} (seal 1) does not match its seal" in broken.stdout


@pytest.mark.calendar
def test_demo_tells_the_same_story_every_run_and_its_ledger_verifies(database_url):
    # Repeatable on one database.
    runs = [pointguard(database_url, "demo", "--story") for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for expected in (
            "Simulated calendar: 2026-11-20 to 2027-01-10",
            "2026-11-29  order #1002",
            "Welcome to Acme Rewards",
            "300 points for order #1001",
            "600 points for order #1002 (Black Friday double points)",
            "30 points back for the refund on order #1001",
            "Now available: 270 points (300 points for order #1001, less returns)",
            "badge 'Regular'",
            "Redeemed: 500 points for 5 EUR off",
            "Challenges completed: three-orders.",
            "all checks pass",
        ):
            assert expected in out, out
        # Each order grants a scratch card, whose prize is drawn at random: 0, 50 or 500.
        won = sum(int(p) for p in re.findall(r"(\d+) points won on a Scratch & win card", out))
        entries = int(re.search(r"Ledger: (\d+) entries for ada", out).group(1))
        assert entries == 16 + len(re.findall("won on a Scratch", out)), out
        assert f"Balance: {920 + won} available, 0 pending, 0 reserved." in out
        assert f"ledger verify: {entries} entries sealed, all checks pass" in out
    first, second = (_story(r.stdout) for r in runs)
    assert first == second


@pytest.mark.calendar
def test_the_demo_calendar_can_start_on_another_day(database_url):
    result = pointguard(database_url, "demo", "--story", "--start", "2027-03-01")
    assert result.returncode == 0, result.stderr
    assert "Simulated calendar: 2027-03-01 to 2027-04-21" in result.stdout
    assert "300 points for order #1002" in result.stdout  # no Black Friday in March


def _story(stdout: str) -> list[str]:
    """The demo's output without what differs between runs: merchant ids, entry ids, codes and
    what the scratch cards' random prizes change."""
    kept = []
    for line in stdout.splitlines():
        if line.startswith(
            ("Acme Rewards at", "Checkout code", "Ledger:", "Balance:", "Merchant:")
        ):
            continue
        if "Scratch & win" in line or "ledger verify" in line:
            continue
        kept.append(re.sub(r"^\s+\d+  ", "", line))
    return kept


async def test_program_analytics_prints_json(run, database_url):
    merchant = (await run(create_merchant, os.urandom(32), "Analytics Shop")).merchant_id
    assert (
        pointguard(
            database_url,
            "program",
            "load",
            str(EXAMPLE_PROGRAM),
            "--merchant",
            merchant,
            "--effective-from",
            "2026-01-01",
        ).returncode
        == 0
    )
    shown = pointguard(
        database_url,
        "program",
        "analytics",
        "--merchant",
        merchant,
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-01",
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert (figures["members"], figures["repeat_purchase_rate"], figures["currency"]) == (
        0,
        None,
        "EUR",
    )


async def test_outbox_dead_lists_dead_deliveries_and_replay_queues_them_again(
    engine, run, database_url
):
    key = os.urandom(32)
    made = await run(create_merchant, key, "CLI Shop", endpoint_url="http://127.0.0.1:9/hooks")
    shop = made.merchant_id
    await run(write_events, shop, [("points.pending", {"member_id": "ann", "points": 5})] * 2)

    async def unavailable(url: str, body: bytes, headers: object) -> int:
        return 503

    credentials, t0 = CredentialCache(key), datetime.now(UTC)
    for i in range(3 * MAX_ATTEMPTS):  # a half-open circuit tries one delivery per pass
        later = t0 + i * timedelta(seconds=MAX_RETRY_S * 1.3)
        await deliver_merchant(engine, credentials, shop, now=later, send=unavailable)

    listed = pointguard(database_url, "outbox", "dead", "--merchant", shop, "--json")
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    assert [(d["event_type"], d["attempts"], d["last_status"]) for d in dead] == [
        ("points.pending", MAX_ATTEMPTS, 503)
    ] * 2
    first, second = (d["webhook_id"] for d in dead)
    text = pointguard(database_url, "outbox", "dead", "--merchant", shop)
    assert f"{first} points.pending of " in text.stdout
    assert f"after {MAX_ATTEMPTS} attempts (HTTP 503): endpoint answered HTTP 503" in text.stdout

    one = pointguard(database_url, "outbox", "replay", shop, first)
    assert (one.returncode, one.stdout.strip()) == (0, f"{shop} {first}: queued again")
    again = pointguard(database_url, "outbox", "replay", shop, first)
    assert again.returncode == 1
    assert f"no dead delivery {first!r}" in again.stderr
    assert pointguard(database_url, "outbox", "replay", shop).returncode == 2  # no id, no --all
    rest = pointguard(database_url, "outbox", "replay", shop, "--all")
    assert rest.stdout.strip() == f"{shop}: 1 dead delivery queued again"
    after = pointguard(database_url, "outbox", "dead", "--merchant", shop, "--json")
    assert json.loads(after.stdout) == []
    async with db.connection(engine) as pg:
        queued = await pg.fetch(
            "SELECT outbox_id, status, attempts FROM outbox_deliveries WHERE merchant_id = $1"
            " ORDER BY outbox_id",
            shop,
        )
    assert [(f"{shop}:{r['outbox_id']}", r["status"], r["attempts"]) for r in queued] == [
        (first, "pending", 0),
        (second, "pending", 0),
    ]


async def test_upkeep_runs_one_pass_and_prints_what_each_job_did(engine, run, database_url):
    shop = (await run(create_merchant, os.urandom(32), "Upkeep Shop")).merchant_id
    await run(write_events, shop, [("points.earned", {"member_id": "ann", "points": 5})] * 2)
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE outbox SET created_at = now() - interval '31 days' WHERE merchant_id = $1",
            shop,
        )
    result = pointguard(database_url, "upkeep")
    assert result.returncode == 0, result.stderr
    assert f"{shop} inbox rows purged: 0\n" in result.stdout
    assert f"{shop} outbox events purged: 2\n" in result.stdout
