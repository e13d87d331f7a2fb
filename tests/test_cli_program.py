"""`pointguard program` and `pointguard inbox` as an operator runs them, in a child process, on
the test database: unknown merchants refused, every problem of a document at once, no version
rewriting the past, JSON for scripts, and webhooks that came before the program applied after
all with `inbox replay M --all`."""

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from pointguard.ledger import member_balances
from pointguard.plugin.merchants import create_merchant
from pointguard.plugin.worker import process_merchant
from tests.cli_helpers import pointguard

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
KEY = os.urandom(32)


@pytest.fixture
async def shop(run) -> str:
    """A registered merchant's id (`merchant create`), with no program yet."""
    return (await run(create_merchant, KEY, "CLI Program Shop")).merchant_id


@pytest.mark.parametrize("command", ["load", "show", "analytics"])
def test_program_commands_refuse_an_unknown_merchant_or_a_display_name(database_url, command):
    for unknown in ("no-such-shop", "CLI Program Shop"):
        args = {
            "load": [str(EXAMPLE)],
            "show": [],
            "analytics": ["--from", "2026-11-01", "--to", "2026-12-01"],
        }[command]
        refused = pointguard(database_url, "program", command, *args, "--merchant", unknown)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.strip() == f"no merchant {unknown!r}"


def test_program_show_prints_one_json_object(database_url, shop):
    loaded = pointguard(database_url, "program", "load", str(EXAMPLE), "--merchant", shop)
    assert loaded.returncode == 0, loaded.stderr
    shown = pointguard(database_url, "program", "show", "--merchant", shop)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["merchant_id"] == shop
    assert document["version"] == 1
    assert [v["version"] for v in document["versions"]] == [1]
    assert document["program"]["name"] == "Acme Rewards"


def test_program_load_reports_every_problem_at_once_and_keeps_the_version_in_force(
    database_url, shop, tmp_path
):
    assert (
        pointguard(database_url, "program", "load", str(EXAMPLE), "--merchant", shop).returncode
        == 0
    )
    broken = tmp_path / "broken.toml"
    broken.write_text(
        EXAMPLE.read_text()
        .replace("return_window_days = 30", "return_window_days = -1\nbonus_points = 5")
        .replace('rounding = "floor"', 'rounding = "up"')
    )
    refused = pointguard(database_url, "program", "load", str(broken), "--merchant", shop)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"{broken}: nothing was saved; the version in force stays as it was",
        "  $.rounding: Invalid enum value 'up'",
        "  $: Object contains unknown field `bonus_points`",
        "  $.return_window_days: must not be negative, got -1",
    ]
    shown = json.loads(pointguard(database_url, "program", "show", "--merchant", shop).stdout)
    assert [v["version"] for v in shown["versions"]] == [1]


def test_a_version_never_rewrites_the_past(database_url, shop):
    def load(effective_from: str) -> subprocess.CompletedProcess[str]:
        return pointguard(
            database_url,
            *("program", "load", str(EXAMPLE), "--merchant", shop),
            *("--effective-from", effective_from),
        )

    assert load("2026-01-01T00:00:00Z").returncode == 0  # the first: nothing governed then
    assert load("2025-06-01T00:00:00Z").returncode == 0  # still nothing governed before it
    refused = load("2025-12-01T00:00:00Z")  # version 2 governed December
    assert refused.returncode == 1
    assert "effective_from: 2025-12-01T00:00:00+00:00 would rewrite the past" in refused.stderr
    assert "version 1 is in force since 2026-01-01T00:00:00+00:00" in refused.stderr
    assert load("2099-01-01T00:00:00Z").returncode == 0  # a future version is fine


async def test_webhooks_before_the_program_are_applied_after_it_with_replay_all(
    database_url, engine, run, open_app, signed_webhook
):
    made = await run(create_merchant, KEY, "Early Shop")
    shop = made.merchant_id
    async with open_app(POINTGUARD_SECRET_KEY=base64.b64encode(KEY).decode()) as (_, client):
        for webhook_id in ("msg_early_1", "msg_early_2"):
            body, headers = signed_webhook(made.webhook_secret, webhook_id)
            posted = await client.post(f"/webhooks/{shop}", content=body, headers=headers)
            assert posted.status_code == 202, posted.text
    assert (await process_merchant(engine, shop)).dead == 2

    listed = pointguard(database_url, "inbox", "dead", "--merchant", shop, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert [d["webhook_id"] for d in letters] == ["msg_early_1", "msg_early_2"]
    reason = letters[0]["last_error"]
    assert reason.startswith(f"program_not_found: merchant {shop!r} has no program in force at ")
    assert f"`pointguard inbox replay {shop} --all`" in reason
    assert f"--merchant {shop} --effective-from TIME" in reason

    loaded = pointguard(
        database_url,
        *("program", "load", str(EXAMPLE), "--merchant", shop),
        *("--effective-from", "2026-01-01"),
    )
    assert loaded.returncode == 0, loaded.stderr
    replayed = pointguard(database_url, "inbox", "replay", shop, "--all")
    assert (replayed.returncode, replayed.stdout) == (0, f"{shop}: 2 dead letters queued again\n")
    assert (await process_merchant(engine, shop)).applied == 2
    signup = await run(member_balances, shop, "ann")
    assert signup.available_points == 100  # the example's signup points, once (lifetime 1)

    empty = pointguard(database_url, "inbox", "dead", "--merchant", shop)
    assert (empty.returncode, empty.stdout) == (0, f"no dead letters for merchant {shop}\n")
    assert (
        json.loads(pointguard(database_url, "inbox", "dead", "--json", "--merchant", shop).stdout)
        == []
    )


def test_inbox_replay_needs_an_id_or_all_and_a_known_merchant(database_url, shop):
    neither = pointguard(database_url, "inbox", "replay", shop)
    assert neither.returncode == 2 and "give either an id or --all" in neither.stderr
    missing = pointguard(database_url, "inbox", "replay", shop, "msg_none")
    assert missing.returncode == 1
    assert missing.stderr == f"no dead letter 'msg_none' for merchant {shop!r}\n"
    unknown = pointguard(database_url, "inbox", "replay", "no-such-shop", "--all")
    assert (unknown.returncode, unknown.stderr) == (1, "no merchant 'no-such-shop'\n")
