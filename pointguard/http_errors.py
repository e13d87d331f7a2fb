"""The one place where errors become HTTP responses: a stable `error.code`, a message that
names the problem, the field where there is one, and the status below. Every refusal is also
logged here, one line with its code, and a refused webhook counted by sender and code (the
webhook handlers bind `sender`, `merchant_id` and `webhook_id` to the request's log fields)."""

from __future__ import annotations

import logging

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from pointguard import db, errors, logs, metrics

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[errors.PointGuardError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.UnknownMerchant, 404),
    (errors.InvalidPayload, 422),
    (errors.WebhookRejected, 401),
    (errors.Unauthorized, 401),
    (errors.KeySetUnavailable, 503),
    (errors.DatabaseUnavailable, 503),
    (errors.InsufficientPoints, 409),
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
RETRY_AFTER_S = 5


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    response = await pointguard_error(
        request, errors.DatabaseUnavailable(f"the database is unavailable: {type(error).__name__}")
    )
    response.headers["retry-after"] = str(RETRY_AFTER_S)
    return response


async def pointguard_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.PointGuardError)
    status = status_of(error)
    _report(error, status)
    body: dict[str, object] = {"code": error.code, "message": str(error)}
    field = getattr(error, "field", None)
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def _report(error: errors.PointGuardError, status: int) -> None:
    """Count and log one refusal: a warning for failed authentication and for our own
    unavailability (5xx), info for a request the caller can fix."""
    sender = logs.bound_fields().get("sender")
    if sender is not None:
        metrics.count_rejected(sender, error.code)
    level = logging.WARNING if status == 401 or status >= 500 else logging.INFO
    detail = str(error)[: logs.MAX_FIELD_CHARS]
    message = "webhook rejected" if sender is not None else "request refused"
    log.log(level, message, extra={"code": error.code, "status": status, "detail": detail})
