"""`pointguard sim` in a child process, as an operator runs it: `generate` writes the same bytes
for the same seed and refuses a bad start in one line; `send` posts a small stream to a running
server, which stores every event in its inbox, and a wrong secret ends in exit 1 naming the
first refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import os

from pointguard import db
from pointguard.fraud.simulation.events import CHECKOUT
from pointguard.plugin.signatures import new_webhook_secret
from tests.cli_helpers import run_cli
from tests.plugin.conftest import SECRET_KEY, merchant_with_program
from tests.plugin.test_ingest import serving_app

SMALL = ("--customers", "8", "--days", "20", "--seed", "11")


def sim(*args: str):
    return run_cli(os.environ, "sim", *args)


def test_generate_writes_the_same_bytes_for_the_same_seed():
    first, again = sim("generate", *SMALL), sim("generate", *SMALL, "--start", "2026-01-05")
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    lines = [json.loads(text) for text in first.stdout.splitlines()]
    assert lines[0]["timestamp"].startswith("2026-01-05")
    assert {"type", "timestamp", "data", "webhook_id", "label"} == set(lines[0])
    assert f"{len(lines)} events for 8 customers over 20 days" in first.stderr


def test_generate_refuses_a_start_that_is_not_a_time():
    done = sim("generate", *SMALL, "--start", "soon")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("sim generate: Invalid isoformat string")


async def test_send_stores_every_event_of_a_stream_in_the_inbox(
    database_url, engine, run, tmp_path
):
    stream = tmp_path / "stream.jsonl"
    stream.write_text((await asyncio.to_thread(sim, "generate", *SMALL)).stdout)
    lines = [json.loads(text) for text in stream.read_text().splitlines()]
    events = {line["webhook_id"] for line in lines if line["type"] != CHECKOUT}
    checkouts = len(lines) - len(events)
    merchant = await merchant_with_program(run, base64.b64decode(SECRET_KEY), "Sim Shop")
    async with serving_app(database_url) as url:
        sent = await asyncio.to_thread(
            sim, "send", str(stream), "--url", url, "--merchant", merchant.merchant_id,
            "--secret", merchant.webhook_secret, "--concurrency", "4",
        )  # fmt: skip
        refused = await asyncio.to_thread(
            sim, "send", str(stream), "--url", url, "--merchant", merchant.merchant_id,
            "--secret", new_webhook_secret(),
        )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert f"{len(events)} accepted, 0 refused" in sent.stdout
    assert f"{checkouts} checkout.redeemed lines skipped" in sent.stdout
    assert f"sent {len(events)}/{len(events)} (100%)" in sent.stderr
    async with db.connection(engine) as pg:
        stored = await pg.fetch(
            "SELECT webhook_id, payload::text AS body FROM inbox WHERE merchant_id = $1",
            merchant.merchant_id,
        )
    assert {row["webhook_id"] for row in stored} == events
    assert all("label" not in json.loads(row["body"]) for row in stored)
    assert refused.returncode == 1
    assert f"0 accepted, {len(events)} refused" in refused.stdout
    assert "first refused:\n  line 1 (" in refused.stderr
    assert "HTTP 401: bad_signature" in refused.stderr
