"""Retention on the real database: what each purge deletes and what it must keep, batches and
their bound, one merchant at a time, and a webhook repeated after its inbox row was purged,
which changes nothing. Rows are made old by moving their timestamps back, since purges count
ages on the database's clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db, metrics
from pointguard.config import MAX_RETENTION_DAYS, load_settings
from pointguard.ledger import member_balances, member_history
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import MAX_ATTEMPTS, MAX_RETRY_S, deliver_merchant
from pointguard.plugin.merchants import create_merchant, set_endpoint
from pointguard.plugin.retention import purge_inbox, purge_outbox
from pointguard.plugin.worker import process_merchant
from pointguard.program.outbox import write_events
from pointguard.upkeep import merchants_due, upkeep_pass
from tests.plugin.test_ingest import paid, post, signed
from tests.test_upkeep import visited

DAYS = 30
OLD = DAYS + 1
LATER = timedelta(seconds=MAX_RETRY_S * 1.3)  # every pending delivery is due again


async def age_inbox(engine, merchant_id: str, webhook_ids: list[str], days: int = OLD) -> None:
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE inbox SET received_at = now() - make_interval(days => $3)"
            " WHERE merchant_id = $1 AND webhook_id = ANY($2::text[])",
            merchant_id,
            webhook_ids,
            days,
        )


async def inbox(engine, merchant_id: str) -> dict[str, str]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT webhook_id, status FROM inbox WHERE merchant_id = $1", merchant_id
        )
    return {r["webhook_id"]: r["status"] for r in rows}


async def write(run, merchant_id: str, *cases: str) -> None:
    """One outbox event per case, its name in the payload."""
    await run(write_events, merchant_id, [("points.earned", {"case": case}) for case in cases])


async def age_outbox(engine, merchant_id: str, *cases: str) -> None:
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE outbox SET created_at = now() - make_interval(days => $3)"
            " WHERE merchant_id = $1 AND payload->>'case' = ANY($2::text[])",
            merchant_id,
            list(cases),
            OLD,
        )


async def outbox(engine, merchant_id: str) -> dict[str, str | None]:
    """Each event's case and its delivery's status (None: no delivery made)."""
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT o.payload->>'case' AS case, d.status FROM outbox o"
            " LEFT JOIN outbox_deliveries d USING (merchant_id, outbox_id)"
            " WHERE o.merchant_id = $1",
            merchant_id,
        )
    return {r["case"]: r["status"] for r in rows}


async def inbox_rows(engine, merchant_id: str, statuses: list[str]) -> list[str]:
    """Old inbox rows as the ingest and the workers leave them, one per status."""
    ids = [f"w-{i}" for i in range(len(statuses))]
    async with db.connection(engine) as pg:
        await pg.execute(
            "INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, status)"
            " SELECT $1, id, 'social.shared', '{}', status"
            " FROM unnest($2::text[], $3::text[]) AS r(id, status)",
            merchant_id,
            ids,
            statuses,
        )
    await age_inbox(engine, merchant_id, ids)
    return ids


async def retention_due(engine, merchant_id: str, **environ: str) -> bool:
    """Does the upkeep find the merchant's retention due, with `environ`'s settings?"""
    settings = load_settings(environ)
    async with db.connection(engine) as pg:
        rows = await merchants_due(pg, settings.clock(), settings, merchant_id)
    return any(row["retention"] for row in rows)


async def test_old_applied_and_ignored_webhooks_go_pending_dead_and_recent_ones_stay(shop, engine):
    client, merchant = shop
    m = merchant.merchant_id
    now = datetime.now(UTC).isoformat()
    inventory = {"type": "inventory.changed", "timestamp": now, "data": {}}
    refund = {
        "type": "order.refunded",
        "timestamp": now,
        "data": {
            "order_id": "never-paid",
            "customer_id": "ann",
            "lines": [{"line_id": "1", "quantity": 1}],
        },
    }
    for payload, webhook_id in [
        (paid("1"), "old-applied"),
        (inventory, "old-ignored"),
        (refund, "old-dead"),
        (paid("2"), "new-applied"),
    ]:
        assert (await post(client, merchant, payload, webhook_id)).status_code == 202
    assert (await process_merchant(engine, m)).dead == 1
    assert (await post(client, merchant, paid("3"), "old-pending")).status_code == 202
    await age_inbox(engine, m, ["old-applied", "old-ignored", "old-dead", "old-pending"])
    assert await inbox(engine, m) == {
        "old-applied": "applied",
        "old-ignored": "ignored",
        "old-dead": "dead",
        "new-applied": "applied",
        "old-pending": "pending",
    }

    assert await purge_inbox(engine, m, retention_days=DAYS) == 2
    assert await inbox(engine, m) == {
        "old-dead": "dead",
        "new-applied": "applied",
        "old-pending": "pending",
    }
    assert await purge_inbox(engine, m, retention_days=DAYS) == 0
    assert await purge_inbox(engine, m, retention_days=0) == 0  # 0 keeps everything
    await age_inbox(engine, m, ["new-applied"], days=DAYS - 1)  # young enough still
    assert await purge_inbox(engine, m, retention_days=DAYS) == 0


async def test_a_webhook_repeated_after_its_row_was_purged_is_applied_as_a_no_op(shop, engine, run):
    client, merchant = shop
    m = merchant.merchant_id
    body = json.dumps(paid("77")).encode()

    async def send():  # the same id and body, signed at the time of sending
        _, headers = signed(merchant.webhook_secret, body, webhook_id="msg_late")
        return await client.post(f"/webhooks/{m}", content=body, headers=headers)

    async def state():
        async with db.connection(engine) as pg:
            events = await pg.fetchval("SELECT count(*) FROM outbox WHERE merchant_id = $1", m)
            applied = await pg.fetchval(
                "SELECT count(*) FROM program_applied_events WHERE merchant_id = $1", m
            )
        history = await run(member_history, m, "ann")
        balances = await run(member_balances, m, "ann")
        return [e.description for e in history.entries], balances, events, applied

    assert (await send()).status_code == 202
    assert (await process_merchant(engine, m)).applied == 1
    before = await state()
    assert before[0] == ["25 points for order #77"] and before[1].pending_points == 25

    await age_inbox(engine, m, ["msg_late"])
    assert await purge_inbox(engine, m, retention_days=DAYS) == 1
    assert await inbox(engine, m) == {}

    late = await send()  # the sender's very late retry
    assert late.status_code == 202
    assert late.json() == {"webhook_id": "msg_late", "status": "pending", "replayed": False}
    done = await process_merchant(engine, m)
    assert (done.applied, done.dead) == (1, 0)
    assert await inbox(engine, m) == {"msg_late": "applied"}
    assert await state() == before  # no entry, no outbox event, nothing applied twice


async def test_outbox_events_go_once_delivered_and_old_and_never_while_still_to_send(
    engine, run, secret_key
):
    merchant = await run(create_merchant, secret_key, "Kept Shop", endpoint_url="http://x/hooks")
    m = merchant.merchant_id
    credentials, t0 = CredentialCache(secret_key), datetime.now(UTC)
    failing = {"dead-old", "pending-old"}

    async def send(url: str, body: bytes, headers: object) -> int:
        return 500 if json.loads(body)["data"]["case"] in failing else 204

    await write(run, m, "delivered-old", "delivered-new", "dead-old")
    for i in range(3 * MAX_ATTEMPTS):  # the circuit's half-open trials take a pass each
        await deliver_merchant(engine, credentials, m, now=t0 + i * LATER, send=send)
    await write(run, m, "pending-old")
    await deliver_merchant(engine, credentials, m, now=t0 + 4 * MAX_ATTEMPTS * LATER, send=send)
    await write(run, m, "waiting-old")  # no delivery made yet: the dispatcher will send it
    await age_outbox(engine, m, "delivered-old", "dead-old", "pending-old", "waiting-old")
    assert await outbox(engine, m) == {
        "delivered-old": "delivered",
        "delivered-new": "delivered",
        "dead-old": "dead",
        "pending-old": "pending",
        "waiting-old": None,
    }

    assert await retention_due(engine, m)
    assert await purge_outbox(engine, m, retention_days=DAYS) == 1
    assert not await retention_due(engine, m)  # what is left is not the purge's to delete
    kept = {
        "delivered-new": "delivered",
        "dead-old": "dead",
        "pending-old": "pending",
        "waiting-old": None,
    }
    assert await outbox(engine, m) == kept
    async with db.connection(engine) as pg:  # the delivery went with its event
        assert (
            await pg.fetchval("SELECT count(*) FROM outbox_deliveries WHERE merchant_id = $1", m)
            == len(kept) - 1
        )

    # With its endpoint removed, nothing will send what has no delivery; the dead and the
    # pending deliveries stay for when an endpoint comes back.
    await run(set_endpoint, secret_key, m, None)
    await write(run, m, "unsent-new")
    assert await purge_outbox(engine, m, retention_days=DAYS, batch_rows=1) == 1
    del kept["waiting-old"]
    assert await outbox(engine, m) == kept | {"unsent-new": None}


async def test_events_of_a_merchant_without_endpoint_go_only_while_it_has_none(
    engine, run, secret_key
):
    merchant = await run(create_merchant, secret_key, "Quiet Shop")
    m = merchant.merchant_id
    await write(run, m, "old-1", "old-2", "new")
    await age_outbox(engine, m, "old-1", "old-2")
    assert await purge_outbox(engine, m, retention_days=0) == 0
    assert await purge_outbox(engine, m, retention_days=DAYS) == 2
    assert await outbox(engine, m) == {"new": None}

    await run(set_endpoint, secret_key, m, "http://x/hooks")
    await write(run, m, "old-3")
    await age_outbox(engine, m, "old-3", "new")
    assert await purge_outbox(engine, m, retention_days=DAYS) == 0  # the dispatcher's now
    assert await outbox(engine, m) == {"new": None, "old-3": None}


async def test_purges_go_in_batches_until_done_or_out_of_time(engine, run, secret_key):
    m = (await run(create_merchant, secret_key, "Batch Shop")).merchant_id
    await inbox_rows(engine, m, ["applied"] * 4 + ["ignored"] * 3)
    assert await purge_inbox(engine, m, retention_days=DAYS, batch_rows=3, budget_s=0) == 3
    assert await purge_inbox(engine, m, retention_days=DAYS, batch_rows=3) == 4  # 3, then 1
    assert await inbox(engine, m) == {}

    cases = [f"e{i}" for i in range(7)]
    await write(run, m, *cases)
    await age_outbox(engine, m, *cases)
    assert await purge_outbox(engine, m, retention_days=DAYS, batch_rows=2, budget_s=0) == 2
    assert await purge_outbox(engine, m, retention_days=DAYS, batch_rows=2) == 5
    assert await outbox(engine, m) == {}
    with pytest.raises(ValueError):
        await purge_inbox(engine, m, retention_days=DAYS, batch_rows=0)


async def test_a_merchants_purge_leaves_every_other_merchants_rows_alone(engine, run, secret_key):
    one, other = [
        (await run(create_merchant, secret_key, name)).merchant_id for name in ("One", "Other")
    ]
    for m in (one, other):
        await inbox_rows(engine, m, ["applied", "ignored"])
        await write(run, m, "old")
        await age_outbox(engine, m, "old")
    assert await purge_inbox(engine, one, retention_days=DAYS) == 2
    assert await purge_outbox(engine, one, retention_days=DAYS) == 1
    assert await inbox(engine, one) == {} and await outbox(engine, one) == {}
    assert await inbox(engine, other) == {"w-0": "applied", "w-1": "ignored"}
    assert await outbox(engine, other) == {"old": None}


async def test_the_upkeep_purges_with_the_configured_retention(engine, run, secret_key):
    m = (await run(create_merchant, secret_key, "Upkept Shop")).merchant_id
    await inbox_rows(engine, m, ["applied"])
    await write(run, m, "old")
    await age_outbox(engine, m, "old")
    keep = load_settings({"POINTGUARD_INBOX_RETENTION_DAYS": "0"})
    done = await upkeep_pass(engine, keep.clock(), settings=keep)
    assert (done[f"{m} inbox rows purged"], done[f"{m} outbox events purged"]) == (0, 1)
    longer = load_settings({"POINTGUARD_INBOX_RETENTION_DAYS": str(OLD + 1)})
    # the inbox row is young enough for that and the event is gone: nothing due, no visit
    assert not visited(await upkeep_pass(engine, longer.clock(), settings=longer), m)
    counted_before = purged_metric("inbox")
    defaults = load_settings({})
    done = await upkeep_pass(engine, defaults.clock(), settings=defaults)
    assert (done[f"{m} inbox rows purged"], done[f"{m} outbox events purged"]) == (1, 0)
    assert purged_metric("inbox") - counted_before >= 1  # /metrics counts what went


def purged_metric(table):
    labels = {"table": table}
    return metrics.REGISTRY.get_sample_value("pointguard_retention_purged_total", labels) or 0


def test_retention_settings():
    defaults = load_settings({})
    assert (defaults.inbox_retention_days, defaults.outbox_retention_days) == (30, 30)
    chosen = load_settings(
        {"POINTGUARD_INBOX_RETENTION_DAYS": "0", "POINTGUARD_OUTBOX_RETENTION_DAYS": "7"}
    )
    assert (chosen.inbox_retention_days, chosen.outbox_retention_days) == (0, 7)
    for bad in ("-1", "thirty", "1.5", "", str(MAX_RETENTION_DAYS + 1)):
        with pytest.raises(ValueError, match="POINTGUARD_OUTBOX_RETENTION_DAYS"):
            load_settings({"POINTGUARD_OUTBOX_RETENTION_DAYS": bad})


ANY_KEY = bytes(32)  # seals an endpoint that no test here reads back


async def no_endpoint_old_event(run, engine, m: str) -> None:
    await write(run, m, "old")
    await age_outbox(engine, m, "old")


async def endpoint_old_event(run, engine, m: str) -> None:
    await run(set_endpoint, ANY_KEY, m, "http://x/hooks")
    await no_endpoint_old_event(run, engine, m)  # the dispatcher's to send


# Rows as the tests above make them, and whether they make the merchant's retention due with
# the default settings and with 0 days (keep everything) for the inbox and the outbox.
RETENTION_WORK = {
    "old applied webhook": (lambda run, engine, m: inbox_rows(engine, m, ["applied"]), True),
    "old ignored webhook": (lambda run, engine, m: inbox_rows(engine, m, ["ignored"]), True),
    "old pending and dead webhooks": (
        lambda run, engine, m: inbox_rows(engine, m, ["pending", "dead"]),
        False,
    ),
    "old event, no endpoint": (no_endpoint_old_event, True),
    "old event not yet dispatched": (endpoint_old_event, False),
    "new event, no endpoint": (lambda run, engine, m: write(run, m, "new"), False),
}


@pytest.mark.parametrize("case", RETENTION_WORK)
async def test_old_rows_to_delete_make_the_merchants_retention_due(engine, run, secret_key, case):
    setup, due = RETENTION_WORK[case]
    m = (await run(create_merchant, secret_key, "Due Shop")).merchant_id
    assert not await retention_due(engine, m)
    await setup(run, engine, m)
    assert await retention_due(engine, m) == due
    kept = {"POINTGUARD_INBOX_RETENTION_DAYS": "0", "POINTGUARD_OUTBOX_RETENTION_DAYS": "0"}
    assert not await retention_due(engine, m, **kept)
