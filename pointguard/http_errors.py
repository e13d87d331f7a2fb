"""The one place where errors become HTTP responses: a stable `error.code`, a message that
names the problem, the field where there is one, and the status below. Every refusal is also
logged here, one line with its code, and a refused webhook counted by sender and code (the
webhook handlers bind `sender`, `merchant_id` and `webhook_id` to the request's log fields)."""

from __future__ import annotations

import logging

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pointguard import db, errors, logs, metrics

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[errors.PointGuardError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.BodyReadTimeout, 408),
    (errors.UnknownMerchant, 404),
    (errors.InvalidPayload, 422),
    (errors.WebhookRejected, 401),
    (errors.Unauthorized, 401),
    (errors.KeySetUnavailable, 503),
    (errors.DatabaseUnavailable, 503),
    (errors.InternalError, 500),
    (errors.CredentialUnreadable, 500),
    (errors.InsufficientPoints, 409),
    (errors.IdempotencyConflict, 409),
    (errors.ReservationLapsed, 409),
    (errors.RewardUnavailable, 409),
    (errors.InvalidEntry, 422),
    (errors.UnknownOrder, 422),
    (errors.ProgramNotFound, 409),
)


def status_of(error: errors.PointGuardError) -> int:
    return next((status for kind, status in STATUS if isinstance(error, kind)), 400)


# The database cannot be reached or refused to work (a restart, a failover, exhausted
# connections): nothing was decided, so the caller should retry, and hears so in the same form
# as every other refusal instead of a bare 500.
DATABASE_ERRORS: tuple[type[Exception], ...] = (*db.DATABASE_UNAVAILABLE, asyncpg.InterfaceError)
# What PostgreSQL says about the statement or its values, not about being there: a retry gets
# the same answer forever (a NUL in a text value: the storefront retried until it disabled its
# webhooks). The door refuses such input first (`ingest.py`, `payloads.py`); one that slips
# through is our bug, a 500 with its traceback in the log, never a 503 that asks for retries.
NOT_AN_OUTAGE: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.SyntaxOrAccessError,
)
# SQLAlchemy wraps the driver's error twice (its DBAPIError, the adapted DB-API error).
MAX_WRAPPED_CAUSES = 4
RETRY_AFTER_S = 5
INTERNAL_ERROR_MESSAGE = "internal error; see the logs"


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    if _is_about_the_input(error):
        internal = errors.InternalError(f"the database refused a statement: {type(error).__name__}")
        internal.__cause__ = error
        return await pointguard_error(request, internal)
    response = await pointguard_error(
        request, errors.DatabaseUnavailable(f"the database is unavailable: {type(error).__name__}")
    )
    response.headers["retry-after"] = str(RETRY_AFTER_S)
    return response


def _is_about_the_input(error: BaseException) -> bool:
    """Whether `error`, or the driver error it wraps, is one of `NOT_AN_OUTAGE`."""
    cause: BaseException | None = error
    for _ in range(MAX_WRAPPED_CAUSES):
        if cause is None:
            return False
        if isinstance(cause, NOT_AN_OUTAGE):
            return True
        cause = cause.__cause__
    return False


async def pointguard_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.PointGuardError)
    status = status_of(error)
    _report(error, status)
    body: dict[str, object] = {"code": error.code, "message": str(error)}
    if status == 500 and not isinstance(error, errors.InternalError):
        # Our own failure: its message is for the operator (which key, which value), and the
        # log has it; the caller learns only that it is not theirs to fix.
        body = {"code": errors.InternalError.code, "message": INTERNAL_ERROR_MESSAGE}
    field = getattr(error, "field", None)
    if field is not None:
        body["field"] = field
    # The rest of a body not read in time may still come: no next request on this connection.
    headers = {"connection": "close"} if isinstance(error, errors.BodyReadTimeout) else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class UnexpectedErrors:
    """ASGI middleware: an exception no handler maps (a bug) becomes a JSON 500
    (`internal_error`), logged with its traceback and the request's log fields.

    Starlette's own last resort answers 500 and then raises the exception again, and uvicorn,
    seeing a response already sent, closes the connection: a storefront's later webhooks on
    that keep-alive connection were reset. Here nothing is raised again once answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:
            if started:  # too late to answer: let the server end the connection
                raise
            internal = errors.InternalError(f"unexpected {type(error).__name__}; see the logs")
            internal.__cause__ = error
            response = await pointguard_error(Request(scope), internal)
            await response(scope, receive, send)


def _report(error: errors.PointGuardError, status: int) -> None:
    """Count and log one refusal: a warning for failed authentication and for our own
    unavailability (5xx), info for a request the caller can fix; an error with the traceback
    for our own bug (`InternalError`)."""
    sender = logs.bound_fields().get("sender")
    if sender is not None:
        metrics.count_rejected(sender, error.code)
    level = logging.WARNING if status == 401 or status >= 500 else logging.INFO
    detail = str(error)[: logs.MAX_FIELD_CHARS]
    message = "webhook rejected" if sender is not None else "request refused"
    extra = {"code": error.code, "status": status, "detail": detail}
    if isinstance(error, errors.InternalError):
        log.error(message, extra=extra, exc_info=error.__cause__)
    else:
        log.log(level, message, extra=extra)
