"""The Starlette application: health endpoints now; `/graphql`, `/webhooks/...` and `/review`
are mounted here as their issues land."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pointguard import db
from pointguard.config import Settings, load_settings
from pointguard.upkeep import upkeep_forever

UPKEEP_INTERVAL_S = 5.0


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers and its schema is at the newest migration."""
    try:
        current = await db.migrations_current(request.app.state.engine)
    except (OSError, SQLAlchemyError) as error:
        return JSONResponse({"status": "unavailable", "reason": str(error)}, status_code=503)
    if not current:
        return JSONResponse(
            {"status": "unavailable", "reason": "migrations pending"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings | None = None, *, upkeep: bool = True) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = db.create_engine(
            db.resolve_database_url(settings), pool_size=settings.db_pool_size
        )
        await db.migrate(engine)
        app.state.engine = engine
        task = (
            asyncio.create_task(upkeep_forever(engine, interval_s=UPKEEP_INTERVAL_S))
            if upkeep
            else None
        )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.dispose()

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz)], lifespan=lifespan
    )
