"""One PostgreSQL per test session: embedded in a temporary folder, or `DATABASE_URL`'s.

Tests are isolated by merchant: each test gets a merchant id no other test uses, and every
ledger statement names its merchant, so tests never see each other's rows.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.clock import Clock
from pointguard.ledger import member_balances
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield db.async_url(external)
        return
    # Not pytest's tmp_path: pytest prunes old basetemp folders, which can pull the data
    # folder from under a server that another pytest run on this machine is using.
    server = db.scratch_postgres(Path(tempfile.mkdtemp(prefix="pointguard-test-pg-")))
    yield db.async_url(server.get_uri())
    server.cleanup()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url, pool_size=20)
    await db.migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def merchant() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


Run = Callable[..., Awaitable[Any]]


@pytest.fixture
def run(engine: AsyncEngine) -> Run:
    """`await run(op, *args)`: one ledger operation in its own transaction."""

    async def run_op(op: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await db.run_in_transaction(engine, op, *args, **kwargs)

    return run_op


@pytest.fixture
def available(run, merchant) -> Callable[[str], Awaitable[int]]:
    """`await available(member)`: the member's available points."""

    async def points(member: str) -> int:
        return (await run(member_balances, merchant, member)).available_points

    return points


@pytest.fixture
def outbox(engine, merchant) -> Callable[[str], Awaitable[list[Any]]]:
    """`await outbox(event_type)`: the payloads of the merchant's outbox events of that type."""

    async def payloads(event_type: str) -> list[Any]:
        async with db.connection(engine) as pg:
            rows = await pg.fetch(
                "SELECT payload::text AS p FROM outbox WHERE merchant_id = $1"
                " AND event_type = $2 ORDER BY 1",
                merchant,
                event_type,
            )
        return [json.loads(r["p"]) for r in rows]

    return payloads


@pytest.fixture
def assert_ledger_intact(engine, run, merchant) -> Callable[[], Awaitable[None]]:
    """`await assert_ledger_intact()`: seal the merchant's new entries, then verify it all."""

    async def check() -> None:
        assert await run(seal, merchant) > 0
        async with db.connection(engine) as pg:
            report = await verify_merchant(pg, merchant)
        assert report.ok, report.problems

    return check


APP_SECRET_KEY = base64.b64encode(os.urandom(32)).decode()


Served = tuple[Any, httpx.AsyncClient]
OpenApp = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def open_app(database_url: str) -> OpenApp:
    """`async with open_app(clock=None, **environ) as (app, client)`: the HTTP app with its real
    lifespan but no background loops, on the test database with `environ`'s settings added
    (and `clock` as its now, if given), and an httpx client on it."""
    from pointguard.app import create_app
    from pointguard.config import load_settings

    @asynccontextmanager
    async def open_one(clock: Clock | None = None, **environ: str) -> AsyncIterator[Served]:
        base = {"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": APP_SECRET_KEY}
        settings = load_settings({**base, **environ})
        if clock is not None:
            settings = dataclasses.replace(settings, clock=clock)
        app = create_app(settings, upkeep=False, workers=False, dispatch=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
                yield app, client

    return open_one


@pytest.fixture
async def served(open_app: OpenApp) -> AsyncIterator[Served]:
    """`(app, client)`: `open_app()` with the default settings."""
    async with open_app() as pair:
        yield pair


SignedWebhook = Callable[[str, str], tuple[bytes, dict[str, str]]]


@pytest.fixture
def signed_webhook() -> SignedWebhook:
    """`signed_webhook(secret, webhook_id)`: `(body, headers)` of a `customer.created`
    Standard Webhook signed now with `secret`."""
    from pointguard.plugin.signatures import sign_standard_webhook

    def sign(secret: str, webhook_id: str) -> tuple[bytes, dict[str, str]]:
        event = {
            "type": "customer.created",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"customer_id": "ann"},
        }
        body = json.dumps(event).encode()
        now = int(time.time())
        signature = sign_standard_webhook(
            secret=secret, private_key=None, webhook_id=webhook_id, timestamp=now, body=body
        )
        return body, {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature,
            "content-type": "application/json",
        }

    return sign
