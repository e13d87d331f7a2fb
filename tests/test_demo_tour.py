"""`pointguard demo`, the tour: simulated storefront traffic through the product, summed up from
the ledger and the fraud tables (pointguard/tour.py, docs/operations.md#the-demo)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pointguard import db
from pointguard.config import load_settings
from pointguard.fraud.backtest.replay import replay
from pointguard.ledger import outstanding_liability
from pointguard.plugin.secretbox import load_keyring
from pointguard.program.document.validate import parse_program
from pointguard.tour import (
    DAY,
    EXAMPLE_PROGRAM,
    TOUR_DAYS,
    TOUR_START,
    ServerNotStarted,
    ServerStopped,
    Stream,
    run_tour,
)
from tests.cli_helpers import pointguard
from tests.conftest import APP_SECRET_KEY

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_the_tour_in_process_catches_attacks_refuses_nothing_and_verifies(database_url):
    began = time.monotonic()
    result = pointguard(
        database_url, "demo", "--minutes", "1", "--no-serve", "--seed", "1", "--json"
    )
    took_s = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert took_s < 60, took_s
    summary = json.loads(result.stdout)  # one JSON object, nothing else on stdout

    assert summary["events_refused"] == 0
    assert summary["events_not_applied"] == 0
    assert summary["attacks_caught"] >= 1
    assert summary["attacks_caught"] == sum(k["caught"] for k in summary["attacks"].values())
    assert summary["attacks_caught"] + summary["attacks_missed"] == len(summary["attacks"])
    assert summary["ledger_verify"] == {
        "ok": True,
        "entries_sealed": summary["ledger_verify"]["entries_sealed"],
        "problems": [],
    }
    assert summary["ledger_verify"]["entries_sealed"] > summary["events_sent"] / 2
    # The simulated calendar, whatever the day the test runs on.
    assert summary["calendar_start"] == TOUR_START.isoformat()
    assert summary["calendar_end"] == (TOUR_START + TOUR_DAYS * DAY).isoformat()
    assert summary["seed"] == 1 and summary["minutes"] == 1
    # The figures hold together as the ledger's do.
    assert summary["members"] > 0 and summary["orders"] > 0
    assert summary["points_held"] > 0 and summary["cases_opened"] > 0
    assert summary["points_released"] > 0  # the upkeep ran on the simulated calendar
    owed = summary["points_available"] + summary["points_pending"] + summary["points_held"]
    assert summary["liability_points"] == owed
    spent = sum(summary[f"points_{k}"] for k in ("redeemed", "expired", "forfeited"))
    assert summary["points_issued"] == summary["liability_points"] + spent
    # Every key is documented, and every documented key is there (open_next: served only).
    section = OPERATIONS.read_text().split("\n## The demo\n")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `([a-z_]+)`", section, re.M))
    keys = set(summary) | {k for kind in summary["attacks"].values() for k in kind}
    keys |= set(summary["ledger_verify"])
    assert documented - keys == {"open_next"}
    assert keys - documented == set()
    # The progress bar went to stderr.
    assert f"{summary['events_sent']}/{summary['events_sent']} events (100%)" in result.stderr


def test_the_story_is_still_there_and_start_is_only_for_it(database_url):
    refused = pointguard(database_url, "demo", "--no-serve", "--start", "2027-03-01")
    assert refused.returncode != 0
    assert "--start is for --story" in refused.stderr


async def test_the_served_tour_applies_the_stream_over_http_and_invites(engine, database_url):
    settings = load_settings(
        {"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": APP_SECRET_KEY}
    )
    tour = await run_tour(
        engine,
        settings,
        load_keyring(settings),
        seed=3,
        minutes=1,
        serve=True,
        customers=40,
        days=12,
        port=0,
    )
    assert tour.server is not None and tour.invitation is not None
    try:
        summary = tour.summary
        sent = len(Stream.of(3, 40, 12).lines)
        assert summary["events_sent"] == sent
        assert summary["events_refused"] == 0 and summary["events_not_applied"] == 0
        assert summary["calendar_end"] == (TOUR_START + 12 * DAY).isoformat()
        assert summary["ledger_verify"]["ok"], summary["ledger_verify"]
        assert summary["members"] > 0
        merchant = summary["merchant_id"]
        async with db.connection(engine) as pg:
            statuses = dict(
                await pg.fetch(
                    "SELECT status, count(*) FROM inbox WHERE merchant_id = $1 GROUP BY status",
                    merchant,
                )
            )
            assert sum(statuses.values()) == sent  # every line came as a webhook
            assert statuses.get("pending", 0) == statuses.get("dead", 0) == 0
            liability = await outstanding_liability(pg, merchant)
        assert summary["liability_points"] == liability

        invitation = tour.invitation
        async with httpx.AsyncClient(base_url=invitation.url) as client:
            me = await client.post(
                "/graphql",
                headers={"Authorization": f"Bearer {invitation.customer_token}"},
                json={"query": "{ me { balance { available pending reserved } } }"},
            )
            assert me.status_code == 200, me.text
            assert me.json()["data"]["me"]["balance"]["available"] > 0
            cases = await client.post(
                "/graphql",
                headers={"Authorization": f"Bearer {invitation.reviewer_key}"},
                json={"query": "{ __typename }"},
            )
            assert cases.status_code == 200, cases.text
            assert (await client.get("/review")).status_code == 200
        lines = invitation.lines()
        assert any(invitation.customer_token in line and "curl" in line for line in lines)
    finally:
        await tour.server.stop()
    assert tour.server.task.done()
    # Work waiting on a stopped server (Ctrl-C while streaming) ends at once, and says so.
    waited = asyncio.sleep(30)
    with pytest.raises(ServerStopped):
        await asyncio.wait_for(tour.server.while_serving(waited), timeout=5)


async def test_the_replay_stops_when_asked_with_only_the_lines_replayed(engine):
    stream = Stream.of(4, 20, 6)
    program = parse_program(EXAMPLE_PROGRAM.read_text())
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) == 3  # at the third day's boundary

    done = await replay(
        engine, stream.lines, program, review_after=None, upkeep_every=DAY, stop=stop
    )
    third_day = TOUR_START + 3 * DAY
    assert done.lines == [line for line in stream.lines if line.at < third_day]
    assert len(asked) == 3
    async with db.connection(engine) as pg:
        decided = await pg.fetchval(
            "SELECT count(DISTINCT event_id) FROM fraud_decisions WHERE merchant_id = $1",
            done.merchant_id,
        )
    late = {line.webhook_id for line in stream.lines if line.at >= third_day}
    assert {d.event_id for d in done.decisions}.isdisjoint(late)
    assert decided == len({d.event_id for d in done.decisions})
    assert timedelta(0) < third_day - done.lines[-1].at <= DAY


async def test_a_taken_port_is_said_plainly_and_leaves_no_merchant(engine, database_url):
    settings = load_settings(
        {"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": APP_SECRET_KEY}
    )
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    async with db.connection(engine) as pg:
        before = await pg.fetchval("SELECT count(*) FROM merchants")
    try:
        with pytest.raises(ServerNotStarted, match=f"cannot listen on 127.0.0.1:{port}"):
            await run_tour(
                engine,
                settings,
                load_keyring(settings),
                seed=1,
                minutes=1,
                serve=True,
                customers=5,
                days=2,
                port=port,
            )
    finally:
        taken.close()
    async with db.connection(engine) as pg:
        assert await pg.fetchval("SELECT count(*) FROM merchants") == before
