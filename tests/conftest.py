"""One PostgreSQL per test session: embedded in a temporary folder, or `DATABASE_URL`'s.

Tests are isolated by merchant: each test gets a merchant id no other test uses, and every
ledger statement names its merchant, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield db.async_url(external)
        return
    import pgserver

    pg_dir: Path = tmp_path_factory.mktemp("pg")
    server = pgserver.get_server(pg_dir, cleanup_mode="delete")
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
