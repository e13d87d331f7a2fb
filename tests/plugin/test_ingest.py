"""`POST /webhooks/{merchant}` end to end: real signatures, the inbox, workers, the ledger.
Every refusal is checked for its status, its `error.code`, and a ledger and inbox unchanged."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from standardwebhooks import Webhook

from bench.loopback_http import free_port
from pointguard import db
from pointguard.app import create_app
from pointguard.clock import Clock
from pointguard.config import load_settings
from pointguard.ledger import member_balances, member_history
from pointguard.plugin import ingest
from pointguard.plugin.inbox import InboxWriter
from pointguard.plugin.signatures import standard_webhook_headers
from pointguard.plugin.worker import (
    dead_letters,
    process_due,
    process_merchant,
    replay_dead_letter,
)
from tests.plugin.conftest import SECRET_KEY, merchant_with_program
from tests.test_logs import lines  # noqa: F401  (a fixture: what the loggers write)


def paid(order_id: str, customer: str = "ann", amount: int = 2500) -> dict[str, object]:
    return {
        "type": "order.paid",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "order_id": order_id,
            "customer_id": customer,
            "currency": "EUR",
            "lines": [
                {
                    "line_id": "1",
                    "sku": "S",
                    "category": "c",
                    "quantity": 1,
                    "unit_price_minor": amount,
                }
            ],
            "device_id": "d-1",  # a fraud-guard field the program does not read
        },
    }


def signed(secret, payload, *, webhook_id, timestamp=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    at = int(time.time()) if timestamp is None else timestamp
    return body, standard_webhook_headers(
        secret=secret, private_key=None, webhook_id=webhook_id, timestamp=at, body=body
    )


async def inbox_count(engine, merchant_id):
    async with db.connection(engine) as pg:
        return await pg.fetchval("SELECT count(*) FROM inbox WHERE merchant_id = $1", merchant_id)


async def post(client, merchant, payload, webhook_id):
    body, headers = signed(merchant.webhook_secret, payload, webhook_id=webhook_id)
    return await client.post(f"/webhooks/{merchant.merchant_id}", content=body, headers=headers)


async def test_a_signed_order_is_accepted_then_applied_once(shop, engine, run):
    client, merchant = shop
    first = await post(client, merchant, paid("1001"), "msg_1")
    assert (first.status_code, first.json()) == (
        202,
        {"webhook_id": "msg_1", "status": "pending", "replayed": False},
    )
    again = await post(client, merchant, paid("1001"), "msg_1")
    assert (again.status_code, again.json()["replayed"]) == (202, True)
    done = await process_merchant(engine, merchant.merchant_id)
    assert (done.applied, done.dead) == (1, 0)
    balances = await run(member_balances, merchant.merchant_id, "ann")
    assert balances.pending_points == 25
    history = await run(member_history, merchant.merchant_id, "ann")
    assert [e.description for e in history.entries] == ["25 points for order #1001"]
    replay = await post(client, merchant, paid("1001"), "msg_1")
    assert replay.json()["status"] == "applied"
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 0


async def test_the_standardwebhooks_package_signs_requests_we_accept(shop):
    client, merchant = shop
    payload = json.dumps(paid("2002"))
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_pkg",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(merchant.webhook_secret).sign("msg_pkg", now, payload),
    }
    response = await client.post(
        f"/webhooks/{merchant.merchant_id}", content=payload, headers=headers
    )
    assert response.status_code == 202, response.text


CASES = [
    pytest.param("bad-signature", 401, "bad_signature", id="wrong-signature"),
    pytest.param("stale", 401, "stale_timestamp", id="stale-timestamp"),
    pytest.param("future", 401, "stale_timestamp", id="future-timestamp"),
    pytest.param("no-signature", 401, "missing_signature", id="missing-signature"),
    pytest.param("malformed", 422, "malformed_json", id="malformed-json"),
    pytest.param("schema", 422, "invalid_payload", id="schema-violation"),
    pytest.param("too-large", 413, "payload_too_large", id="oversized-body"),
    pytest.param("unknown-merchant", 404, "unknown_merchant", id="unknown-merchant"),
]


@pytest.mark.parametrize(("case", "status", "code"), CASES)
async def test_bad_requests_are_refused_and_change_nothing(shop, engine, run, case, status, code):
    client, merchant = shop
    target = f"/webhooks/{merchant.merchant_id}"
    payload = paid("3003")
    timestamp = None
    if case == "malformed":
        payload = b'{"type": "order.paid", '
    elif case == "schema":
        payload["data"]["lines"][0]["quantity"] = 0
    elif case == "too-large":
        payload = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
    elif case == "stale":
        timestamp = int(time.time()) - 301
    elif case == "future":
        timestamp = int(time.time()) + 301
    body, headers = signed(
        merchant.webhook_secret, payload, webhook_id="msg_bad", timestamp=timestamp
    )
    if case == "bad-signature":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    elif case == "no-signature":
        del headers["webhook-signature"]
    elif case == "unknown-merchant":
        target = "/webhooks/nobody-here"
    before = await run(member_balances, merchant.merchant_id, "ann")
    response = await client.post(target, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if case == "schema":
        assert response.json()["error"]["field"] == "$.data.lines[0].quantity"
    assert await inbox_count(engine, merchant.merchant_id) == 0
    await process_due(engine)
    assert await run(member_balances, merchant.merchant_id, "ann") == before


async def test_unknown_event_types_are_acknowledged_and_ignored(shop, engine):
    client, merchant = shop
    inventory = {
        "type": "inventory.changed",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {},
    }
    response = await post(client, merchant, inventory, "msg_inv")
    assert (response.status_code, response.json()["status"]) == (202, "ignored")
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 0


async def test_poison_events_are_dead_lettered_and_the_rest_applied(shop, engine, run):
    client, merchant = shop
    refund = {
        "type": "order.refunded",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "order_id": "never-paid",
            "customer_id": "ann",
            "lines": [{"line_id": "1", "quantity": 1}],
        },
    }
    for webhook_id, payload in (("msg_a", paid("1")), ("msg_b", refund), ("msg_c", paid("2"))):
        assert (await post(client, merchant, payload, webhook_id)).status_code == 202
    done = await process_merchant(engine, merchant.merchant_id)
    assert (done.applied, done.dead) == (2, 1)
    async with db.connection(engine) as pg:
        dead = await pg.fetchrow(
            "SELECT webhook_id, last_error FROM inbox WHERE merchant_id = $1 AND status = 'dead'",
            merchant.merchant_id,
        )
    assert dead["webhook_id"] == "msg_b" and dead["last_error"].startswith("unknown_order")
    assert (await run(member_balances, merchant.merchant_id, "ann")).pending_points == 50
    letters = await run(dead_letters, merchant.merchant_id)
    assert [d["webhook_id"] for d in letters] == ["msg_b"]
    assert await run(replay_dead_letter, merchant.merchant_id, "msg_b")
    assert not await run(replay_dead_letter, merchant.merchant_id, "msg_a")  # not dead
    again = await process_merchant(engine, merchant.merchant_id)
    assert (again.applied, again.dead) == (0, 1)  # still a refund of an unknown order


async def test_workers_racing_on_one_inbox_apply_every_event_once(shop, engine, run):
    client, merchant = shop
    for n in range(60):
        response = await post(client, merchant, paid(f"o{n}", customer=f"c{n % 7}"), f"msg_{n}")
        assert response.status_code == 202

    async def worker() -> int:
        applied = 0
        while (done := await process_merchant(engine, merchant.merchant_id, limit=7)).applied:
            applied += done.applied
        return applied

    counts = await asyncio.gather(worker(), worker(), worker())
    assert sum(counts) == 60
    total = 0
    for n in range(7):
        total += (await run(member_balances, merchant.merchant_id, f"c{n}")).pending_points
    assert total == 60 * 25


async def test_a_database_outage_is_a_503_to_retry_and_stores_nothing(open_app, engine, run):
    async with open_app() as (app, client):
        merchant = await merchant_with_program(run, app.state.secret_key, "Outage Shop")
        working = app.state.inbox
        nowhere = db.create_engine(f"postgresql+asyncpg://pg@127.0.0.1:{free_port()}/none")
        app.state.inbox = InboxWriter(nowhere)
        try:
            down = await post(client, merchant, paid("4004"), "msg_down")
        finally:
            app.state.inbox = working
            await nowhere.dispose()
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "database_unavailable"
        assert down.headers["retry-after"] == "5"
        assert await inbox_count(engine, merchant.merchant_id) == 0
        retried = await post(client, merchant, paid("4004"), "msg_down")  # the sender retries
        assert (retried.status_code, retried.json()["replayed"]) == (202, False)


@asynccontextmanager
async def serving_app(
    database_url: str, clock: Clock | None = None, **environ: str
) -> AsyncIterator[str]:
    """The app (no background loops) served by uvicorn on 127.0.0.1, with its lifespan, in
    this test's event loop, with `environ`'s settings added (and `clock` as its now, if
    given); yields the base URL."""
    base = {"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": SECRET_KEY}
    settings = load_settings(base | environ)
    if clock is not None:
        settings = dataclasses.replace(settings, clock=clock)
    app = create_app(settings, upkeep=False, workers=False, dispatch=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(30):
            while not server.started:
                assert not serving.done(), "the server stopped"
                await asyncio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await serving


async def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_usable(
    database_url,
    engine,
    run,
    monkeypatch,
    lines,  # noqa: F811  (the fixture imported)
):
    merchant = await merchant_with_program(run, base64.b64decode(SECRET_KEY), "Bug Shop")
    real = ingest.to_program_event

    def failing(webhook_id, envelope):
        if webhook_id == "msg_bug":
            raise RuntimeError("a bug on the webhook path")
        return real(webhook_id, envelope)

    monkeypatch.setattr(ingest, "to_program_event", failing)
    url = f"/webhooks/{merchant.merchant_id}"
    async with (
        serving_app(database_url) as base,
        httpx.AsyncClient(base_url=base) as client,  # one keep-alive connection
    ):
        responses, ports = [], []
        for webhook_id in ("msg_bug", "msg_ok"):
            body, headers = signed(merchant.webhook_secret, paid("5005"), webhook_id=webhook_id)
            responses.append(await client.post(url, content=body, headers=headers))
            stream = responses[-1].extensions["network_stream"]
            ports.append(stream.get_extra_info("client_addr")[1])
    bug, after = responses
    assert bug.status_code == 500, bug.text
    assert bug.json()["error"] == {
        "code": "internal_error",
        "message": "unexpected RuntimeError; see the logs",
    }
    assert (after.status_code, after.json()["webhook_id"]) == (202, "msg_ok")
    assert ports[0] == ports[1], "the request after the 500 came on a new connection"
    [logged] = [line for line in lines.json() if line["logger"] == "pointguard.http_errors"]
    assert (logged["level"], logged["webhook_id"], logged["code"]) == (
        "error",
        "msg_bug",
        "internal_error",
    )
    assert "RuntimeError: a bug on the webhook path" in logged["exception"]
    async with db.connection(engine) as pg:
        ids = await pg.fetch(
            "SELECT webhook_id FROM inbox WHERE merchant_id = $1", merchant.merchant_id
        )
    assert [r["webhook_id"] for r in ids] == ["msg_ok"]


def line_with(**changes):
    order = paid("6006")
    order["data"]["lines"][0].update(changes)
    return order


BEYOND_LIMITS = [
    pytest.param(
        line_with(unit_price_minor=10**30), "$.data.lines[0].unit_price_minor", id="10^30"
    ),
    pytest.param(
        line_with(unit_price_minor=10**12 + 1), "$.data.lines[0].unit_price_minor", id="amount"
    ),
    pytest.param(line_with(quantity=10**9), "$.data.lines[0].quantity", id="quantity"),
    pytest.param(
        line_with(unit_price_minor=10**9, quantity=1001), "$.data.lines", id="order-total"
    ),
    pytest.param(line_with(sku="x" * 201), "$.data.lines[0].sku", id="sku"),
    pytest.param(line_with(category="a\x00b"), "$.data.lines[0].category", id="nul"),
    pytest.param(
        line_with(extra=json.loads("[" * 40 + "]" * 40)),
        "$.data.lines[0].extra" + "[0]" * 29,
        id="nesting",
    ),
    pytest.param(
        {**paid("6006"), "timestamp": "2026-11-20T10:00:00"}, "$.timestamp", id="no-offset"
    ),
    pytest.param(
        {**paid("6006"), "timestamp": "2200-01-01T00:00:00Z"}, "$.timestamp", id="year-2200"
    ),
]


@pytest.mark.parametrize(("payload", "field"), BEYOND_LIMITS)
async def test_values_beyond_the_limits_are_refused_naming_the_field(
    shop, engine, run, payload, field
):
    client, merchant = shop
    before = await run(member_balances, merchant.merchant_id, "ann")
    response = await post(client, merchant, payload, "msg_limit")
    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        "invalid_payload",
        field,
    )
    assert await inbox_count(engine, merchant.merchant_id) == 0
    await process_merchant(engine, merchant.merchant_id)
    assert await run(member_balances, merchant.merchant_id, "ann") == before


async def test_a_one_megabyte_sku_is_refused_under_a_larger_body_limit(open_app, engine, run):
    async with open_app(POINTGUARD_MAX_WEBHOOK_BODY_BYTES=str(2 * 1024 * 1024)) as (app, client):
        merchant = await merchant_with_program(run, app.state.secret_key, "Big Body Shop")
        response = await post(client, merchant, line_with(sku="x" * 1024 * 1024), "msg_sku")
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "$.data.lines[0].sku"
        assert await inbox_count(engine, merchant.merchant_id) == 0
        await process_merchant(engine, merchant.merchant_id)
        assert (await run(member_balances, merchant.merchant_id, "ann")).pending_points == 0
