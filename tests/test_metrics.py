"""`GET /metrics` on the real app and database: webhooks counted by sender and code, the
database gauges, the dispatcher's outcomes, the token, and counts from several processes
adding up (`pointguard serve --workers 2`, end to end)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loopback_http import HOST, free_port
from pointguard import db, metrics
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import CIRCUIT_THRESHOLD, deliver_merchant
from pointguard.plugin.merchants import create_merchant
from pointguard.program.outbox import write_events

SERVE_KEY = base64.b64encode(os.urandom(32)).decode()
REFUSED_URL = "http://127.0.0.1:1/hooks"  # nothing listens on port 1: every attempt fails
SERVER_READY_S = 60.0


@pytest.fixture
def app(served):
    """The app, reading the database gauges afresh at every scrape."""
    made, _ = served
    made.state.database_gauges = metrics.DatabaseGauges(made.state.engine, max_age_s=0)
    return made


@pytest.fixture
def client(app, served):
    return served[1]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


async def scrape(client) -> dict:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_webhooks_are_counted_by_sender_and_error_code(client, app, run, signed_webhook):
    merchant = await run(create_merchant, app.state.secret_key, "Counted Shop")
    path = f"/webhooks/{merchant.merchant_id}"
    before = await scrape(client)

    body, headers = signed_webhook(merchant.webhook_secret, "msg_counted")
    assert (await client.post(path, content=body, headers=headers)).status_code == 202
    replay = await client.post(path, content=body, headers=headers)
    assert replay.json()["replayed"] is True
    forged = {**headers, "webhook-signature": "v1,AAAA"}
    assert (await client.post(path, content=body, headers=forged)).status_code == 401
    wrong_hmac = {"x-shopify-topic": "orders/paid", "x-shopify-hmac-sha256": "AAAA"}
    shopify = await client.post(f"{path}/shopify", content=b"{}", headers=wrong_hmac)
    assert shopify.status_code == 401
    unknown = await client.post("/webhooks/m-nobody", content=body, headers=headers)
    assert unknown.status_code == 404

    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("pointguard_webhooks_accepted_total", sender="standard") == 2
    assert grew("pointguard_webhooks_replayed_total", sender="standard") == 1
    rejected = "pointguard_webhooks_rejected_total"
    assert grew(rejected, sender="standard", code="bad_signature") == 1
    assert grew(rejected, sender="shopify", code="bad_signature") == 1
    assert grew(rejected, sender="standard", code="unknown_merchant") == 1
    # Every sender's series exists from the start, so rate() works before the first webhook.
    for sender in metrics.SENDERS:
        assert ("pointguard_webhooks_accepted_total", frozenset({("sender", sender)})) in after
    # No merchant label anywhere: merchants are unbounded.
    assert all("merchant_id" not in dict(labels) for _, labels in after)


async def test_inbox_gauges_show_a_pending_row_its_age_and_a_dead_letter(client, engine, merchant):
    before = await scrape(client)
    async with db.connection(engine) as pg:
        await pg.execute(
            "INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, received_at)"
            " VALUES ($1, 'msg_old', 'customer.created', '{}', now() - interval '2 hours')",
            merchant,
        )
    pending = await scrape(client)
    assert value(pending, "pointguard_metrics_database_ok") == 1
    assert (
        value(pending, "pointguard_inbox_pending") == value(before, "pointguard_inbox_pending") + 1
    )
    assert value(pending, "pointguard_inbox_lag_seconds") >= 2 * 3600

    async with db.connection(engine) as pg:
        await pg.execute("UPDATE inbox SET status = 'dead' WHERE merchant_id = $1", merchant)
    dead = await scrape(client)
    assert value(dead, "pointguard_inbox_pending") == value(before, "pointguard_inbox_pending")
    assert value(dead, "pointguard_inbox_dead") == value(before, "pointguard_inbox_dead") + 1


async def test_dispatcher_failures_and_the_circuit_are_counted(client, app, engine, run):
    key = app.state.secret_key
    merchant = await run(create_merchant, key, "Down Shop", endpoint_url=REFUSED_URL)
    events = [("points.pending", {"member_id": "ann", "points": i}) for i in range(8)]
    await run(write_events, merchant.merchant_id, events)
    before = await scrape(client)
    backlog = value(before, "pointguard_outbox_backlog")
    assert backlog >= len(events)  # counted before the dispatcher has made delivery rows

    done = await deliver_merchant(engine, CredentialCache(key), merchant.merchant_id)
    assert (done.retried, done.circuit_open) == (CIRCUIT_THRESHOLD, 1)

    after = await scrape(client)
    attempts = "pointguard_outbox_attempts_total"
    assert (
        value(after, attempts, outcome="failed") - value(before, attempts, outcome="failed")
        == CIRCUIT_THRESHOLD
    )
    assert value(after, attempts, outcome="delivered") == value(
        before, attempts, outcome="delivered"
    )
    opened = "pointguard_outbox_circuits_opened_total"
    assert value(after, opened) - value(before, opened) == 1
    assert value(after, "pointguard_outbox_circuits_open") >= 1
    assert value(after, "pointguard_outbox_backlog") == backlog  # all still to deliver


async def test_a_metrics_token_is_required_when_set(open_app):
    async with open_app(POINTGUARD_METRICS_TOKEN="s3cret") as (_, http):
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await http.get("/metrics", headers={"authorization": "Bearer s3cret"})
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthorized")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "pointguard_webhooks_accepted_total" in right.text


async def test_database_gauges_are_absent_but_counters_served_when_the_database_is_not(client, app):
    await app.state.engine.dispose()
    app.state.database_gauges = metrics.DatabaseGauges(
        db.create_engine("postgresql://nobody@127.0.0.1:1/none"), max_age_s=0
    )
    failed = await scrape(client)
    assert value(failed, "pointguard_metrics_database_ok") == 0
    assert ("pointguard_inbox_pending", frozenset()) not in failed
    assert ("pointguard_webhooks_accepted_total", frozenset({("sender", "standard")})) in failed


COUNT_IN_CHILD = """
import sys
from pathlib import Path
from pointguard.metrics_dir import share_metrics
share_metrics(Path(sys.argv[1]), clean=False)
from pointguard import metrics
if sys.argv[2] == "count":
    metrics.count_accepted("shopify", replayed=False)
    metrics.observe_worker_batch(0.02, applied=3, dead=1, retried=0)
else:
    sys.stdout.write(metrics.render([]).decode())
"""


def test_counts_of_several_processes_add_up(tmp_path):
    def child(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", COUNT_IN_CHILD, str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    child("count")
    child("count")
    total = samples(child("render"))
    assert value(total, "pointguard_webhooks_accepted_total", sender="shopify") == 2
    assert value(total, "pointguard_worker_rows_total", outcome="applied") == 6
    assert value(total, "pointguard_worker_rows_total", outcome="dead") == 2
    assert value(total, "pointguard_worker_batch_seconds_count") == 2
    assert value(total, "pointguard_worker_batch_seconds_bucket", le="0.025") == 2


async def test_serve_with_two_processes_counts_every_webhook_once_and_logs_json(
    tmp_path, database_url, run, signed_webhook
):
    merchant = await run(create_merchant, base64.b64decode(SERVE_KEY), "Served Shop")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_4194999.db"  # above any pid Linux hands out: not running
    stale.write_bytes(b"left by a run before")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": SERVE_KEY,
        "POINTGUARD_DATA_DIR": str(tmp_path / "data"),
        "POINTGUARD_METRICS_DIR": str(metrics_dir),
        "POINTGUARD_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    server = start_serve(env, port, log)
    try:
        base = f"http://{HOST}:{port}"
        await wait_ready(base, server, log)
        assert not stale.exists()
        sent = 12
        for i in range(sent):
            body, headers = signed_webhook(merchant.webhook_secret, f"msg_served_{i}")
            # A new connection each time, so that both processes take some.
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.post(
                    f"/webhooks/{merchant.merchant_id}", content=body, headers=headers
                )
            assert response.status_code == 202, response.text
        async with httpx.AsyncClient(base_url=base) as http:
            forged = {**headers, "webhook-id": "msg_forged", "webhook-signature": "v1,AAAA"}
            refused = await http.post(
                f"/webhooks/{merchant.merchant_id}", content=body, headers=forged
            )
        assert refused.status_code == 401
        for _ in range(4):  # whichever process answers, it answers for both
            async with httpx.AsyncClient(base_url=base) as http:
                scraped = samples((await http.get("/metrics")).text)
            accepted = value(scraped, "pointguard_webhooks_accepted_total", sender="standard")
            assert accepted == sent
            rejected = "pointguard_webhooks_rejected_total"
            assert value(scraped, rejected, sender="standard", code="bad_signature") == 1
        pids = {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
        assert len(pids) == 2
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)

    # Every line is one JSON object, uvicorn's and Python warnings' included.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    [rejection] = [line for line in lines if line["message"] == "webhook rejected"]
    assert rejection["merchant_id"] == merchant.merchant_id
    assert rejection["webhook_id"] == "msg_forged"
    assert (rejection["code"], rejection["status"], rejection["level"]) == (
        "bad_signature",
        401,
        "warning",
    )
    assert not any(line["message"] == "webhook accepted" for line in lines)  # info level


def start_serve(env: dict[str, str], port: int, log) -> subprocess.Popen[bytes]:
    command = ["serve", "--workers", "2", "--port", str(port)]
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "pointguard.cli", *command],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(base: str, server: subprocess.Popen[bytes], log) -> None:
    deadline = time.monotonic() + SERVER_READY_S
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"serve not ready:\n{log.read_text(errors='replace')[-3000:]}")
