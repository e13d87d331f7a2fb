"""Dead outbound deliveries against a real HTTP receiver on 127.0.0.1: an endpoint that always
fails gets its deliveries dead-lettered; they are listed; once the endpoint is fixed a replay
delivers each exactly once more, with the webhook id of every earlier attempt and valid
signatures. Time is driven forward by passing `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pointguard import db
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.deliveries import (
    dead_deliveries,
    outbox_id_of,
    replay_dead_deliveries,
    replay_dead_delivery,
)
from pointguard.plugin.dispatcher import MAX_ATTEMPTS, MAX_RETRY_S, deliver_merchant
from pointguard.plugin.merchants import create_merchant
from pointguard.program.outbox import write_events

# Longer than the longest backoff with jitter, so every pending delivery is due again.
LATER = timedelta(seconds=MAX_RETRY_S * 1.3)
# Enough passes for two deliveries to die: a half-open circuit tries one delivery per pass.
PASSES = 3 * MAX_ATTEMPTS


async def statuses(engine, merchant_id: str) -> list[tuple[str, int]]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT status, attempts FROM outbox_deliveries WHERE merchant_id = $1"
            " ORDER BY outbox_id",
            merchant_id,
        )
    return [(r["status"], r["attempts"]) for r in rows]


async def test_dead_deliveries_are_listed_and_replayed_once_with_the_same_webhook_id(
    engine, run, receiver, secret_key
):
    credentials = CredentialCache(secret_key)
    receiver.fail_first = 10**6
    merchant = await run(create_merchant, secret_key, "Dead Shop", endpoint_url=receiver.url)
    shop = merchant.merchant_id
    await run(
        write_events,
        shop,
        [("points.pending", {"member_id": "ann", "points": 10}), ("tier.changed", {"tier": 2})],
    )
    t0 = datetime.now(UTC)
    for i in range(PASSES):
        await deliver_merchant(engine, credentials, shop, now=t0 + i * LATER)
    assert await statuses(engine, shop) == [("dead", MAX_ATTEMPTS)] * 2
    sent_before = len(receiver.requests)
    assert sent_before == 2 * MAX_ATTEMPTS

    async with db.connection(engine) as pg:
        dead = await dead_deliveries(pg, shop)
        assert [d for d in await dead_deliveries(pg, limit=1000) if d.merchant_id == shop] == dead
        assert await dead_deliveries(pg, shop, limit=1) == dead[:1]
    assert [(d.event_type, d.attempts, d.last_status, d.last_error) for d in dead] == [
        ("points.pending", MAX_ATTEMPTS, 500, "endpoint answered HTTP 500"),
        ("tier.changed", MAX_ATTEMPTS, 500, "endpoint answered HTTP 500"),
    ]
    assert [d.webhook_id for d in dead] == [f"{shop}:{d.outbox_id}" for d in dead]
    later = t0 + (PASSES + 1) * LATER  # past the circuit's cool-down
    assert not (await deliver_merchant(engine, credentials, shop, now=later)).busy

    receiver.accept_from_now()
    first, second = dead
    assert await run(replay_dead_delivery, shop, first.webhook_id)
    assert not await run(replay_dead_delivery, shop, first.webhook_id)  # pending, not dead
    assert not await run(replay_dead_delivery, "someone-else", str(second.outbox_id))
    assert await run(replay_dead_deliveries, shop) == 1  # the second one
    assert await run(replay_dead_deliveries, shop) == 0
    assert await statuses(engine, shop) == [("pending", 0)] * 2
    async with db.connection(engine) as pg:
        assert await dead_deliveries(pg, shop) == []

    delivered = 0
    for _ in range(4):  # the circuit's half-open trial first, then the rest
        delivered += (await deliver_merchant(engine, credentials, shop, now=later)).delivered
    assert delivered == 2
    assert await statuses(engine, shop) == [("delivered", 1)] * 2
    replayed = receiver.requests[sent_before:]
    assert sorted(h["webhook-id"] for h, _, _ in replayed) == [first.webhook_id, second.webhook_id]
    assert receiver.accepted_ids() == [first.webhook_id, second.webhook_id]
    # Every attempt, failed or accepted, carried one of the two webhook ids: receivers dedupe.
    assert {h["webhook-id"] for h, _, _ in receiver.requests} == {
        first.webhook_id,
        second.webhook_id,
    }
    receiver.verify_signatures(merchant)


async def test_a_replay_by_bare_outbox_id_and_what_names_no_delivery(engine, run, secret_key):
    merchant = await run(create_merchant, secret_key, "Refusing Shop", endpoint_url="http://x/")
    shop = merchant.merchant_id
    await run(write_events, shop, [("points.earned", {"member_id": "bo", "points": 1})])

    async def refuse(url: str, body: bytes, headers: object) -> int:
        return 410

    credentials, t0 = CredentialCache(secret_key), datetime.now(UTC)
    for i in range(PASSES):
        await deliver_merchant(engine, credentials, shop, now=t0 + i * LATER, send=refuse)
    async with db.connection(engine) as pg:
        [dead] = await dead_deliveries(pg, shop)
    assert (dead.last_status, dead.last_error) == (410, "endpoint answered HTTP 410")
    assert await run(replay_dead_delivery, shop, str(dead.outbox_id))
    assert await statuses(engine, shop) == [("pending", 0)]

    assert outbox_id_of(shop, f"{shop}:{dead.outbox_id}") == dead.outbox_id
    assert outbox_id_of(shop, f"other-shop:{dead.outbox_id}") is None
    for nonsense in ("", "x", f"{shop}:", "-3", "١٢", str(2**63)):
        assert outbox_id_of(shop, nonsense) is None, nonsense
