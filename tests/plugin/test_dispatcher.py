"""The outbox dispatcher against a real HTTP receiver on 127.0.0.1: signed deliveries that
every Standard Webhooks library verifies, retries with backoff until accepted, a dead letter
after the last attempt, the circuit breaker, and no endpoint, no delivery. Time is driven
forward by passing `now`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.config import ALLOW_LOOPBACK_ENDPOINTS
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import (
    CIRCUIT_THRESHOLD,
    COOL_DOWN_S,
    MAX_ATTEMPTS,
    MAX_RETRY_S,
    RETRY_POLICY,
    DispatchResult,
    deliver_due,
    deliver_merchant,
    dispatch_forever,
)
from pointguard.plugin.merchants import NewMerchant, create_merchant
from pointguard.program.outbox import write_events

KEY = os.urandom(32)
CREDENTIALS = CredentialCache(KEY)
# Longer than the longest backoff with jitter, so every pending delivery is due again.
LATER = timedelta(seconds=MAX_RETRY_S * 1.3)


async def shop(run, url: str | None, events: int) -> NewMerchant:
    merchant: NewMerchant = await run(create_merchant, KEY, "Out Shop", endpoint_url=url)
    await run(
        write_events,
        merchant.merchant_id,
        [("points.pending", {"member_id": "ann", "points": 10 * (i + 1)}) for i in range(events)],
    )
    return merchant


async def deliveries(engine, merchant_id: str) -> list[dict[str, object]]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT outbox_id, status, attempts, last_error FROM outbox_deliveries"
            " WHERE merchant_id = $1 ORDER BY outbox_id",
            merchant_id,
        )
    return [dict(r) for r in rows]


async def circuit(engine, merchant_id: str) -> dict[str, object]:
    async with db.connection(engine) as pg:
        row = await pg.fetchrow(
            "SELECT consecutive_failures, open_until FROM outbox_circuits WHERE merchant_id = $1",
            merchant_id,
        )
    return dict(row)


async def test_each_event_arrives_once_signed_after_retries(engine, run, receiver):
    receiver.fail_first = 3
    merchant = await shop(run, receiver.url, events=3)
    t0 = datetime.now(UTC)

    first = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0)
    assert (first.delivered, first.retried, first.dead) == (0, 3, 0)
    assert (
        await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0)
        == DispatchResult()
    )
    second = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0 + LATER)
    assert (second.delivered, second.retried) == (3, 0)
    third = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0 + 2 * LATER)
    assert not third.busy

    rows = await deliveries(engine, merchant.merchant_id)
    ids = [f"{merchant.merchant_id}:{r['outbox_id']}" for r in rows]
    assert receiver.accepted_ids() == sorted(ids)
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == [
        ("delivered", 2, None)
    ] * 3
    # The webhook id is the same on the retry, so a receiver dedupes by it.
    assert sorted(h["webhook-id"] for h, _, _ in receiver.requests) == sorted(ids * 2)
    receiver.verify_signatures(merchant)
    bodies = [json.loads(body) for _, body, status in receiver.requests if status == 204]
    assert sorted(b["data"]["points"] for b in bodies) == [10, 20, 30]
    assert {b["type"] for b in bodies} == {"points.pending"}
    assert all(datetime.fromisoformat(b["timestamp"]).tzinfo is not None for b in bodies)


async def test_a_delivery_is_dead_after_the_last_attempt(engine, run, receiver):
    receiver.fail_first = 10**6
    merchant = await shop(run, receiver.url, events=1)
    t0 = datetime.now(UTC)
    results = [
        await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0 + i * LATER)
        for i in range(MAX_ATTEMPTS)
    ]
    assert [r.retried for r in results] == [1] * (MAX_ATTEMPTS - 1) + [0]
    assert results[-1].dead == 1
    [row] = await deliveries(engine, merchant.merchant_id)
    assert (row["status"], row["attempts"]) == ("dead", MAX_ATTEMPTS)
    assert row["last_error"] == "endpoint answered HTTP 500"
    after = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0 + 99 * LATER)
    assert not after.busy
    assert len(receiver.requests) == MAX_ATTEMPTS


async def test_the_circuit_opens_after_consecutive_failures_and_closes_after_cool_down(
    engine, run, receiver
):
    receiver.fail_first = 10**6
    events = CIRCUIT_THRESHOLD + 2
    merchant = await shop(run, receiver.url, events=events)
    t0 = datetime.now(UTC)

    opened = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t0)
    assert (opened.retried, opened.circuit_open) == (CIRCUIT_THRESHOLD, 1)
    assert len(receiver.requests) == CIRCUIT_THRESHOLD  # the rest of the batch was not tried
    state = await circuit(engine, merchant.merchant_id)
    assert state == {
        "consecutive_failures": CIRCUIT_THRESHOLD,
        "open_until": t0 + timedelta(seconds=COOL_DOWN_S),
    }

    # Open: nothing is tried, however much is due.
    during = await deliver_merchant(
        engine, CREDENTIALS, merchant.merchant_id, now=t0 + timedelta(seconds=30)
    )
    assert during.circuit_open == 1
    assert len(receiver.requests) == CIRCUIT_THRESHOLD

    # Half-open: one trial; it fails, so the circuit opens for another cool-down.
    t1 = t0 + timedelta(seconds=COOL_DOWN_S + 60)
    trial = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t1)
    assert (trial.retried, trial.circuit_open) == (1, 1)
    assert len(receiver.requests) == CIRCUIT_THRESHOLD + 1
    assert (await circuit(engine, merchant.merchant_id))["open_until"] == t1 + timedelta(
        seconds=COOL_DOWN_S
    )
    assert not (await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t1)).busy

    # The endpoint recovers: the next trial succeeds and closes the circuit, then all go.
    receiver.accept_from_now()
    t2 = t1 + LATER
    closing = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t2)
    assert closing.delivered == 1
    assert await circuit(engine, merchant.merchant_id) == {
        "consecutive_failures": 0,
        "open_until": None,
    }
    rest = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, now=t2)
    assert rest.delivered == events - 1
    assert len(receiver.accepted_ids()) == events
    assert {r["status"] for r in await deliveries(engine, merchant.merchant_id)} == {"delivered"}


async def test_a_merchant_without_an_endpoint_is_skipped(engine, run):
    merchant = await shop(run, None, events=2)
    sent: list[str] = []

    async def send(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        sent.append(headers["webhook-id"])
        return 500

    await deliver_due(engine, CREDENTIALS, send=send)
    await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id, send=send)
    assert [s for s in sent if s.startswith(f"{merchant.merchant_id}:")] == []
    assert await deliveries(engine, merchant.merchant_id) == []


async def test_a_refused_connection_is_retried(engine, run, monkeypatch):
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "1")  # a closed port on this machine
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    merchant = await shop(run, f"http://127.0.0.1:{port}/hooks", events=1)
    done = await deliver_merchant(engine, CREDENTIALS, merchant.merchant_id)
    assert done.retried == 1
    [row] = await deliveries(engine, merchant.merchant_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("ConnectError")


async def test_concurrent_dispatchers_never_send_one_event_twice(engine, run):
    merchant = await shop(run, "http://127.0.0.1:9/unused", events=20)
    sent: list[str] = []

    async def slow_send(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        await asyncio.sleep(0.01)
        sent.append(headers["webhook-id"])
        return 200

    async def dispatcher() -> None:
        for _ in range(5):
            await deliver_merchant(
                engine, CREDENTIALS, merchant.merchant_id, send=slow_send, limit=4
            )

    await asyncio.gather(*(dispatcher() for _ in range(4)))
    assert len(sent) == len(set(sent)) == 20


@pytest.mark.parametrize("attempts", [1, 2, 5, 12, 13, 14, 15, 40])
def test_retry_delay_doubles_from_5_s_to_10_h_with_jitter(attempts):
    base_s = min(5 * 2 ** (attempts - 1), MAX_RETRY_S)
    delays = [RETRY_POLICY.delay_s(attempts, random.Random(seed)) for seed in range(200)]
    assert all(0.8 * base_s <= d <= 1.2 * base_s for d in delays)
    assert len(set(delays)) > 1  # jittered, not one fixed schedule


async def test_an_event_that_commits_after_a_newer_one_is_still_delivered(engine, run, receiver):
    """Outbox ids are handed out in one order and committed in another: an event whose
    transaction is still open when the dispatcher passes must be delivered on a later pass."""
    merchant = await shop(run, receiver.url, events=0)
    m = merchant.merchant_id
    t0 = datetime.now(UTC)
    async with db.connection(engine) as slow, slow.transaction():
        await write_events(slow, m, [("points.pending", {"member_id": "ann", "points": 1})])
        await run(write_events, m, [("points.pending", {"member_id": "bob", "points": 2})])
        first = await deliver_merchant(engine, CREDENTIALS, m, now=t0)
        assert first.delivered == 1  # the newer event; the older one is not committed yet
    second = await deliver_merchant(engine, CREDENTIALS, m, now=t0)
    assert second.delivered == 1
    bodies = [json.loads(body) for _, body, status in receiver.requests if status == 204]
    assert sorted(b["data"]["points"] for b in bodies) == [1, 2]
    assert [r["status"] for r in await deliveries(engine, m)] == ["delivered", "delivered"]


async def test_the_dispatcher_loop_delivers_on_its_own_and_keeps_one_connection(
    engine, run, receiver
):
    merchant = await shop(run, receiver.url, events=2)
    loop = asyncio.create_task(dispatch_forever(engine, CredentialCache(KEY)))
    try:
        for _ in range(100):
            if [r["status"] for r in await deliveries(engine, merchant.merchant_id)] == [
                "delivered"
            ] * 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the dispatcher loop delivered nothing in 5 s")
        await run(write_events, merchant.merchant_id, [("points.pending", {"points": 3})])
        for _ in range(100):
            if len(receiver.requests) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert len(receiver.requests) == 3
    # The first two were sent at once, on two connections; the third reused one of them.
    assert len(receiver.peers) == 2


async def test_a_pass_visits_only_merchants_with_work(engine, run, receiver):
    idle = await shop(run, receiver.url, events=0)
    busy = await shop(run, receiver.url, events=1)

    async def visited(merchant):  # the dispatcher makes a circuit row for each merchant it works
        async with db.connection(engine) as pg:
            return await pg.fetchval(
                "SELECT count(*) FROM outbox_circuits WHERE merchant_id = $1",
                merchant.merchant_id,
            )

    await deliver_due(engine, CREDENTIALS, now=datetime.now(UTC))
    assert (await visited(idle), await visited(busy)) == (0, 1)
    assert receiver.accepted_ids() == [
        f"{busy.merchant_id}:{r['outbox_id']}" for r in await deliveries(engine, busy.merchant_id)
    ]
    await run(write_events, idle.merchant_id, [("points.pending", {"points": 5})])
    await deliver_due(engine, CREDENTIALS, now=datetime.now(UTC))
    assert await visited(idle) == 1
    assert [r["status"] for r in await deliveries(engine, idle.merchant_id)] == ["delivered"]
