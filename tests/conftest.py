"""One PostgreSQL per test session: embedded in a temporary folder, or `DATABASE_URL`'s.

Tests are isolated by merchant: each test gets a merchant id no other test uses, and every
ledger statement names its merchant, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield db.async_url(external)
        return
    from pgserver.postgres_server import get_server

    # Not pytest's tmp_path: pytest prunes old basetemp folders, which can pull the data
    # folder from under a server that another pytest run on this machine is using.
    server = get_server(Path(tempfile.mkdtemp(prefix="pointguard-test-pg-")), cleanup_mode="delete")
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
