"""`/graphql`: the request is bounded and its caller verified before Strawberry sees it.

Before execution, in this order: the body is read up to `MAX_REQUEST_BYTES`, the credential
verified, the caller's rate limit spent (`rate_limit.py`), and a persisted query's hash
replaced by its text (`persisted.py`). Each refusal answers in GraphQL's own shape,
`{"errors": [{"message", "extensions": {"code"}}]}`, with the HTTP status that says what to do
(413, 401, 429 with `Retry-After`; 200 for `PersistedQueryNotFound`, as Apollo's clients
expect), so a GraphQL client shows the message. GraphiQL is served on a
GET without a query, unless in production mode."""

from __future__ import annotations

from cross_web import HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message
from strawberry.asgi import GraphQL

from pointguard.config import Settings
from pointguard.errors import PointGuardError, QueryRefused, RateLimited, Unauthorized
from pointguard.graphql.auth import Authenticator, Role
from pointguard.graphql.context import RequestContext
from pointguard.graphql.persisted import PersistedQueries, PersistedQueryNotFound
from pointguard.graphql.rate_limit import RateLimiter
from pointguard.graphql.schema import build_schema
from pointguard.plugin.bounded import read_at_most
from pointguard.plugin.secretbox import Keys

MAX_REQUEST_BYTES = 64 * 1024  # a real query with its variables is a few KiB
# PostgreSQL's text cannot hold a NUL character: a value with one would fail deep inside a
# resolver, so it is refused at the door (escaped in JSON, or raw).
NUL_IN_JSON = b"\\u0000"
NUL_REFUSED = "a NUL character (\\u0000) cannot be stored: remove it from the request"


class GraphQLEndpoint:
    """The Starlette endpoint; one per app, made in its lifespan."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        engine: AsyncEngine,
        secret_key: Keys,
    ) -> None:
        self._settings = settings
        self._secret_key = secret_key
        self._authenticator = authenticator
        self._engine = engine
        self._view: GraphQL[RequestContext, None] = GraphQL(
            build_schema(production=settings.production),
            graphql_ide=None if settings.production else "graphiql",
        )
        self._customers = RateLimiter(settings.graphql_customer_rate_per_s)
        self._keys = RateLimiter(settings.graphql_key_rate_per_s)
        self._persisted = PersistedQueries()

    async def __call__(self, request: Request) -> Response:
        if request.method == "GET" and "query" not in request.query_params:
            if self._settings.production:
                return refusal(QueryRefused("send a query: GraphiQL is off in production"), 404)
            return await self._view.render_graphql_ide(request)
        try:
            body = await read_at_most(
                request.stream(),
                MAX_REQUEST_BYTES,
                lambda: QueryRefused(f"a GraphQL request has at most {MAX_REQUEST_BYTES} bytes"),
            )
        except QueryRefused as error:
            return refusal(error, 413)
        if NUL_IN_JSON in body or b"\x00" in body:
            return refusal(QueryRefused(NUL_REFUSED), 400)
        now = self._settings.clock()
        try:
            caller = await self._authenticator.caller(request.headers.get("authorization"), now)
        except Unauthorized as error:
            return refusal(error, 401)
        limiter = self._customers if caller.role is Role.CUSTOMER else self._keys
        try:
            limiter.spend(caller.rate_key)
        except RateLimited as error:
            response = refusal(error, 429)
            response.headers["retry-after"] = str(error.retry_after_s)
            return response
        try:
            body = self._persisted.resolve(body)
        except QueryRefused as error:
            return refusal(error, 200 if isinstance(error, PersistedQueryNotFound) else 400)
        context = RequestContext(self._engine, caller, now, self._secret_key)
        try:
            return await self._view.run(_replaying(request, body), context=context)
        except HTTPException as error:
            return refusal(QueryRefused(error.reason), error.status_code)
        finally:
            await context.close()


def refusal(error: PointGuardError, status: int) -> JSONResponse:
    """A request refused before it ran, in GraphQL's error shape."""
    payload = {"errors": [{"message": str(error), "extensions": {"code": error.code}}]}
    return JSONResponse(payload, status_code=status)


def _replaying(request: Request, body: bytes) -> Request:
    """The request again, its body already read (and bounded) above."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)
