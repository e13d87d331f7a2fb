"""What the command groups share: every command works on a migrated database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import load_settings

T = TypeVar("T")


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
