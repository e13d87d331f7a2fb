"""The Starlette application: `/webhooks/{merchant}`, health endpoints, `/metrics`, `/graphql`,
the reviewers' console at `/review` (`console/`), and, in the background, the inbox workers,
the outbox dispatcher and the upkeep. Errors become responses in one place (`http_errors.py`); each
request's log fields are its own (`logs.RequestLogContext`)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pointguard import db, metrics
from pointguard.config import Settings, load_settings
from pointguard.console import console_routes
from pointguard.errors import PointGuardError, Unauthorized
from pointguard.graphql.auth import Authenticator
from pointguard.graphql.endpoint import GraphQLEndpoint
from pointguard.http_errors import (
    DATABASE_ERRORS,
    UnexpectedErrors,
    database_unavailable,
    pointguard_error,
)
from pointguard.logs import RequestLogContext
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import dispatch_forever
from pointguard.plugin.inbox import InboxWriter
from pointguard.plugin.ingest import (
    receive_saleor,
    receive_shopify,
    receive_webhook,
    receive_woocommerce,
)
from pointguard.plugin.jwks import KeySetCache
from pointguard.plugin.merchants import reseal_all
from pointguard.plugin.secretbox import Keyring, load_keyring
from pointguard.plugin.worker import work_forever
from pointguard.upkeep import upkeep_forever

UPKEEP_INTERVAL_S = 5.0

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers and its schema is at the newest migration. Anyone may
    ask, so a failure's detail (the database's host and port) goes to the log only."""
    try:
        current = await db.migrations_current(request.app.state.engine)
    except (OSError, SQLAlchemyError) as error:
        log.warning("not ready", extra={"detail": f"{type(error).__name__}: {error}"})
        return JSONResponse({"status": "unavailable", "reason": "not ready"}, status_code=503)
    if not current:
        return JSONResponse(
            {"status": "unavailable", "reason": "migrations pending"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics in the text format (docs/operations.md). With
    `POINTGUARD_METRICS_TOKEN` set, only for `Authorization: Bearer <token>`."""
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise Unauthorized("/metrics needs Authorization: Bearer <POINTGUARD_METRICS_TOKEN>")
    gauges = await request.app.state.database_gauges.families()
    return Response(metrics.render(gauges), media_type=metrics.CONTENT_TYPE)


async def graphql(request: Request) -> Response:
    endpoint: GraphQLEndpoint = request.app.state.graphql
    return await endpoint(request)


async def _seal_values_stored_before_key_ids(engine: AsyncEngine, keys: Keyring) -> None:
    """Bind to their merchant the values a migration could not (it has no key): those stored
    before key ids, and URLs set before they were sealed. Nothing to do after the first start."""
    done = await reseal_all(engine, keys, moving_to=None)
    if done.values or done.urls:
        log.info(
            "sealed values stored before key ids", extra={"values": done.values, "urls": done.urls}
        )
    if done.unreadable:
        log.warning(
            "stored values that no key of the keyring opens",
            extra={"unreadable": done.unreadable},
        )


def create_app(
    settings: Settings | None = None,
    *,
    upkeep: bool = True,
    workers: bool = True,
    dispatch: bool = True,
) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = db.create_engine(
            db.resolve_database_url(settings), pool_size=settings.db_pool_size
        )
        await db.migrate(engine)
        app.state.engine = engine
        app.state.settings = settings
        app.state.secret_key = load_keyring(settings)
        await _seal_values_stored_before_key_ids(engine, app.state.secret_key)
        app.state.credentials = CredentialCache(app.state.secret_key)
        if settings.metrics_token is None:
            log.warning(
                "/metrics is open to anyone who can reach this server: set"
                " POINTGUARD_METRICS_TOKEN to require Authorization: Bearer <token>"
            )
        app.state.key_sets = KeySetCache(refetch_interval_s=settings.jwks_refetch_interval_s)
        app.state.inbox = InboxWriter(engine)
        app.state.graphql = GraphQLEndpoint(
            settings,
            Authenticator(engine, app.state.credentials, operator_key=settings.operator_key),
            engine,
            app.state.secret_key,
        )
        app.state.database_gauges = metrics.DatabaseGauges(engine)
        tasks: list[asyncio.Task[None]] = []
        if upkeep:
            loop = upkeep_forever(engine, interval_s=UPKEEP_INTERVAL_S, settings=settings)
            tasks.append(asyncio.create_task(loop))
        if workers:
            loop = work_forever(engine, app.state.secret_key, guarded=settings.fraud_guard)
            tasks.append(asyncio.create_task(loop))
        if dispatch:
            tasks.append(asyncio.create_task(dispatch_forever(engine, app.state.credentials)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.dispose()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus_metrics),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *console_routes("/review"),
            Route("/webhooks/{merchant}", receive_webhook, methods=["POST"]),
            Route("/webhooks/{merchant}/shopify", receive_shopify, methods=["POST"]),
            Route("/webhooks/{merchant}/woocommerce", receive_woocommerce, methods=["POST"]),
            Route("/webhooks/{merchant}/saleor", receive_saleor, methods=["POST"]),
        ],
        exception_handlers={
            PointGuardError: pointguard_error,
            **{kind: database_unavailable for kind in DATABASE_ERRORS},
        },
        # RequestLogContext outermost: an unexpected error is logged with the request's fields.
        middleware=[Middleware(RequestLogContext), Middleware(UnexpectedErrors)],
        lifespan=lifespan,
    )
