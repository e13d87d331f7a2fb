"""`POST /webhooks/{merchant}`: verify, record in the inbox, and only then say 202.

Order of checks, each refusing with its own `error.code` and none writing anything: body size
(413), merchant (404), signature and timestamp (401), JSON and the event's schema (422). A
verified event of a type the program does not know is recorded as `ignored` and acknowledged.
Workers (`worker.py`) apply what was recorded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from pointguard import db
from pointguard.config import Settings
from pointguard.db import PgConnection
from pointguard.errors import InvalidPayload, PayloadTooLarge, UnknownMerchant
from pointguard.plugin.adapters import shopify_to_canonical, woocommerce_to_canonical
from pointguard.plugin.inbox import Recorded, record_webhook
from pointguard.plugin.merchants import MerchantCredentials, merchant_credentials
from pointguard.plugin.payloads import decode_envelope, to_program_event
from pointguard.plugin.signatures import (
    verify_shopify_hmac,
    verify_standard_webhook,
    verify_woocommerce_hmac,
)

CREDENTIALS_TTL_S = 5.0
# A refund of an order we never saw has no member; it is recorded, then dead-lettered by the
# worker as a refund of an unknown order, where an operator can see it.
UNKNOWN_MEMBER = "unknown-member"

ORDER_MEMBER = "SELECT member_id FROM program_orders WHERE merchant_id = $1 AND order_id = $2"


class CredentialCache:
    """A merchant's decrypted credentials, kept for `ttl_s` so that each webhook does not
    re-read and re-decrypt them; a rotated secret takes effect within `ttl_s`."""

    def __init__(self, key: bytes, ttl_s: float = CREDENTIALS_TTL_S) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, MerchantCredentials]] = {}

    async def get(self, pg: PgConnection, merchant_id: str) -> MerchantCredentials | None:
        now = time.monotonic()
        cached = self._entries.get(merchant_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        found = await merchant_credentials(pg, self._key, merchant_id)
        if found is not None:  # unknown ids are not cached: they would let anyone fill memory
            self._entries[merchant_id] = (now, found)
        return found


@asynccontextmanager
async def _merchant_request(
    request: Request,
) -> AsyncIterator[tuple[PgConnection, MerchantCredentials, bytes]]:
    """The body (within the size limit), a connection, and the merchant's credentials."""
    settings: Settings = request.app.state.settings
    merchant_id = request.path_params["merchant"]
    body = await _read_body(request, settings.max_webhook_body_bytes)
    async with db.connection(request.app.state.engine) as pg:
        credentials = await request.app.state.credentials.get(pg, merchant_id)
        if credentials is None:
            raise UnknownMerchant(f"no merchant {merchant_id!r}")
        yield pg, credentials, body


async def receive_webhook(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    async with _merchant_request(request) as (pg, credentials, body):
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
        return await _record(pg, request.path_params["merchant"], webhook_id, body)


async def receive_shopify(request: Request) -> JSONResponse:
    """A Shopify-style webhook (see `adapters.py`)."""
    return await _receive_adapted(request, "shopify")


async def receive_woocommerce(request: Request) -> JSONResponse:
    """A WooCommerce-style webhook (see `adapters.py`)."""
    return await _receive_adapted(request, "woocommerce")


async def _receive_adapted(request: Request, sender: str) -> JSONResponse:
    merchant_id = request.path_params["merchant"]
    headers = request.headers
    async with _merchant_request(request) as (pg, credentials, body):
        if sender == "shopify":
            verify_shopify_hmac(
                secrets=credentials.inbound_secrets,
                header=headers.get("x-shopify-hmac-sha256", ""),
                body=body,
            )
            payload, topic = _json_object(body), headers.get("x-shopify-topic", "")
            customer = None
            if topic == "refunds/create":
                customer = await pg.fetchval(
                    ORDER_MEMBER, merchant_id, str(payload.get("order_id"))
                )
            canonical = shopify_to_canonical(topic, payload, customer or UNKNOWN_MEMBER)
            webhook_id = f"shopify:{headers.get('x-shopify-webhook-id') or _digest(body)}"
        else:
            verify_woocommerce_hmac(
                secrets=credentials.inbound_secrets,
                header=headers.get("x-wc-webhook-signature", ""),
                body=body,
            )
            payload, topic = _json_object(body), headers.get("x-wc-webhook-topic", "")
            canonical = woocommerce_to_canonical(topic, payload)
            status = payload.get("status", "")
            webhook_id = f"woocommerce:{topic}:{payload.get('id')}:{status}"
        if canonical is None:
            recorded = await record_webhook(
                pg, merchant_id, webhook_id, f"{sender}:{topic}", body.decode(), ignored=True
            )
            return _accepted(recorded)
        return await _record(pg, merchant_id, webhook_id, msgspec.json.encode(canonical))


async def _record(pg: PgConnection, merchant_id: str, webhook_id: str, body: bytes) -> JSONResponse:
    """Check a canonical payload and put it in the inbox (ignored if the program has no use
    for its type), then acknowledge."""
    envelope = decode_envelope(body)
    event = to_program_event(webhook_id, envelope)  # validates the event's data
    recorded = await record_webhook(
        pg, merchant_id, webhook_id, envelope.type, body.decode(), ignored=event is None
    )
    return _accepted(recorded)


def _accepted(recorded: Recorded) -> JSONResponse:
    return JSONResponse(
        {
            "webhook_id": recorded.webhook_id,
            "status": recorded.status,
            "replayed": recorded.replayed,
        },
        status_code=202,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise InvalidPayload(f"not JSON: {error}", code="malformed_json") from error
    if not isinstance(payload, dict):
        raise InvalidPayload("the body must be a JSON object")
    return payload


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


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
