"""`POST /webhooks/{merchant}`: verify, record in the inbox, and only then say 202.

Order of checks, each refusing with its own `error.code` and none writing anything: body size
(413), merchant (404), signature and timestamp (401), JSON and the event's schema (422). A
verified event of a type the program does not know is recorded as `ignored` and acknowledged.
Workers (`worker.py`) apply what was recorded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from pointguard import db
from pointguard.config import Settings
from pointguard.db import PgConnection
from pointguard.errors import InvalidPayload, PayloadTooLarge, UnknownMerchant
from pointguard.plugin.inbox import record_webhook
from pointguard.plugin.merchants import MerchantCredentials, merchant_credentials
from pointguard.plugin.payloads import decode_envelope, to_program_event
from pointguard.plugin.signatures import verify_standard_webhook

CREDENTIALS_TTL_S = 5.0


class CredentialCache:
    """A merchant's decrypted credentials, kept for `ttl_s` so that each webhook does not
    re-read and re-decrypt them; a rotated secret takes effect within `ttl_s`."""

    def __init__(self, key: bytes, ttl_s: float = CREDENTIALS_TTL_S) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, MerchantCredentials | None]] = {}

    async def get(self, pg: PgConnection, merchant_id: str) -> MerchantCredentials | None:
        now = time.monotonic()
        cached = self._entries.get(merchant_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        found = await merchant_credentials(pg, self._key, merchant_id)
        if found is not None:  # unknown ids are not cached: they would let anyone fill memory
            self._entries[merchant_id] = (now, found)
        return found


async def receive_webhook(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    merchant_id = request.path_params["merchant"]
    body = await _read_body(request, settings.max_webhook_body_bytes)
    async with db.connection(request.app.state.engine) as pg:
        credentials = await request.app.state.credentials.get(pg, merchant_id)
        if credentials is None:
            raise UnknownMerchant(f"no merchant {merchant_id!r}")
        headers = request.headers
        webhook_id = headers.get("webhook-id", "")
        verify_standard_webhook(
            secrets=credentials.inbound_secrets,
            public_keys=credentials.inbound_public_keys,
            webhook_id=webhook_id,
            timestamp=headers.get("webhook-timestamp", ""),
            signature_header=headers.get("webhook-signature", ""),
            body=body,
            now=datetime.now(UTC),
            tolerance_s=settings.webhook_tolerance_s,
        )
        envelope = decode_envelope(body)
        event = to_program_event(webhook_id, envelope)  # validates the event's data
        recorded = await record_webhook(
            pg, merchant_id, webhook_id, envelope.type, body.decode(), ignored=event is None
        )
    return JSONResponse(
        {"webhook_id": webhook_id, "status": recorded.status, "replayed": recorded.replayed},
        status_code=202,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        body.decode()
    except UnicodeDecodeError as error:
        raise InvalidPayload("body is not UTF-8", code="malformed_json") from error
    return body
