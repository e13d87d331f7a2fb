"""The one place where errors become HTTP responses: a stable `error.code`, a message that
names the problem, the field where there is one, and the status below."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from pointguard import errors

STATUS: tuple[tuple[type[errors.PointGuardError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.UnknownMerchant, 404),
    (errors.InvalidPayload, 422),
    (errors.WebhookRejected, 401),
    (errors.InsufficientPoints, 409),
    (errors.RewardUnavailable, 409),
    (errors.InvalidEntry, 422),
    (errors.UnknownOrder, 422),
    (errors.ProgramNotFound, 409),
)


def status_of(error: errors.PointGuardError) -> int:
    return next((status for kind, status in STATUS if isinstance(error, kind)), 400)


async def pointguard_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.PointGuardError)
    body: dict[str, object] = {"code": error.code, "message": str(error)}
    field = getattr(error, "field", None)
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status_of(error))
