"""What the command groups share: every command works on a migrated database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import load_settings
from pointguard.db import PgConnection

T = TypeVar("T")
P = ParamSpec("P")


def with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Connect (starting the embedded PostgreSQL when DATABASE_URL is unset), migrate, work."""
    settings = load_settings()

    async def run() -> T:
        engine = db.create_engine(db.resolve_database_url(settings), pool_size=4)
        try:
            await db.migrate(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def in_transaction(
    op: Callable[Concatenate[PgConnection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`op(pg, *args, **kwargs)` in a transaction of its own, on a migrated database."""
    return with_engine(lambda engine: db.run_in_transaction(engine, op, *args, **kwargs))
