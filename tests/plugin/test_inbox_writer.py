"""The inbox's group commit: many concurrent requests share a commit, and each still hears
exactly how its own row stands."""

import asyncio
import json

import asyncpg
import pytest

from pointguard import db
from pointguard.plugin.inbox import InboxRow, InboxWriter


def row(merchant, webhook_id, payload=None, *, ignored=False):
    body = payload if payload is not None else json.dumps({"type": "order.paid", "n": webhook_id})
    return InboxRow(merchant, webhook_id, "order.paid", body, ignored)


async def inbox_rows(engine, merchant):
    async with db.connection(engine) as pg:
        return {
            r["webhook_id"]: r["status"]
            for r in await pg.fetch(
                "SELECT webhook_id, status FROM inbox WHERE merchant_id = $1", merchant
            )
        }


@pytest.fixture
async def shop_id(engine, merchant):
    async with db.connection(engine) as pg:
        await pg.execute("INSERT INTO merchants (merchant_id, name) VALUES ($1, $1)", merchant)
    return merchant


async def test_concurrent_rows_share_commits_and_are_each_recorded_once(engine, shop_id):
    writer = InboxWriter(engine, max_batch=50)
    results = await asyncio.gather(*[writer.record(row(shop_id, f"w{n}")) for n in range(300)])
    assert [r.webhook_id for r in results] == [f"w{n}" for n in range(300)]
    assert all(r.status == "pending" and not r.replayed for r in results)
    assert await inbox_rows(engine, shop_id) == {f"w{n}": "pending" for n in range(300)}
    async with db.connection(engine) as pg:
        commits = await pg.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM inbox WHERE merchant_id = $1", shop_id
        )
    assert 6 <= commits < 20  # batches of at most 50, and far fewer commits than rows


async def test_a_replay_in_the_same_batch_or_later_hears_the_first_status(engine, shop_id):
    writer = InboxWriter(engine)
    first, again = await asyncio.gather(
        writer.record(row(shop_id, "dup")), writer.record(row(shop_id, "dup", ignored=True))
    )
    assert (first.status, first.replayed) == ("pending", False)
    assert (again.status, again.replayed) == ("pending", True)
    later = await writer.record(row(shop_id, "dup"))
    assert (later.status, later.replayed) == ("pending", True)
    ignored = await writer.record(row(shop_id, "other", ignored=True))
    assert (ignored.status, ignored.replayed) == ("ignored", False)
    assert await inbox_rows(engine, shop_id) == {"dup": "pending", "other": "ignored"}


async def test_one_bad_row_fails_alone(engine, shop_id):
    writer = InboxWriter(engine)
    results = await asyncio.gather(
        writer.record(row(shop_id, "good-1")),
        writer.record(row(shop_id, "bad", payload="{not json")),
        writer.record(row(shop_id, "good-2")),
        return_exceptions=True,
    )
    assert isinstance(results[1], asyncpg.PostgresError)
    assert [r.status for r in (results[0], results[2])] == ["pending", "pending"]
    assert await inbox_rows(engine, shop_id) == {"good-1": "pending", "good-2": "pending"}
    after = await writer.record(row(shop_id, "good-3"))  # the writer carries on
    assert after.status == "pending"


async def test_many_merchants_rows_share_commits(engine, shop_id):
    """One statement serves every merchant waiting: with the load spread over many merchants,
    a statement per merchant would be a commit per row."""
    others = [f"{shop_id}-{n}" for n in range(5)]
    async with db.connection(engine) as pg:
        for other in others:
            await pg.execute("INSERT INTO merchants (merchant_id, name) VALUES ($1, $1)", other)
    writer = InboxWriter(engine, max_batch=50)
    merchants = [shop_id, *others]
    rows = [row(merchants[n % len(merchants)], f"w{n}") for n in range(300)]
    results = await asyncio.gather(*[writer.record(r) for r in rows])
    assert all(r.status == "pending" and not r.replayed for r in results)
    async with db.connection(engine) as pg:
        stored = await pg.fetch(
            "SELECT merchant_id, webhook_id, xmin::text AS commit FROM inbox"
            " WHERE merchant_id = ANY($1::text[])",
            merchants,
        )
    assert sorted((r["merchant_id"], r["webhook_id"]) for r in stored) == sorted(
        (r.merchant_id, r.webhook_id) for r in rows
    )
    assert len({r["commit"] for r in stored}) < 20  # batches of at most 50, not 300 commits
