"""`POST /webhooks/{merchant}`: verify, record in the inbox, and only then say 202.

Order of checks, each refusing with its own `error.code` and none writing anything: body size
(413) and read deadline (408), merchant (404), signature and timestamp (401, or 503 while the
storefront's JWKS cannot be fetched), JSON and the event's schema (422). A verified event of a
type the program does not know is recorded as `ignored` and acknowledged.
Workers (`worker.py`) apply what was recorded.

Every handler enters through `_merchant_request`, which binds the request's `sender` and
`merchant_id` to its log fields (`logs.py`), and `webhook_id` is bound as soon as it is known:
every line logged for the request names them, and the 202 here and each refusal in
`http_errors.py` are counted by that sender (`metrics.py`). Nothing is logged per accepted
webhook unless at debug: this is the hot path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from pointguard import db, logs, metrics
from pointguard.clock import wall_clock
from pointguard.config import Settings
from pointguard.errors import (
    BodyReadTimeout,
    InvalidPayload,
    KeySetNotConfigured,
    PayloadTooLarge,
    UnknownMerchant,
)
from pointguard.plugin.adapters.fields import Canonical
from pointguard.plugin.adapters.saleor import saleor_to_canonical
from pointguard.plugin.adapters.shopify import refunded_order, shopify_to_canonical
from pointguard.plugin.adapters.woocommerce import woocommerce_to_canonical
from pointguard.plugin.bounded import read_at_most
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.inbox import InboxRow, InboxWriter, Recorded
from pointguard.plugin.jwks import KeySetCache
from pointguard.plugin.jws import parse_detached_jws, verify_rs256
from pointguard.plugin.merchants import MERCHANT_ID, MerchantCredentials
from pointguard.plugin.payloads import (
    MAX_TEXT_CHARS,
    check_storable_text,
    envelope_of,
    json_document,
    store_json,
    to_program_event,
)
from pointguard.plugin.signatures import (
    verify_shopify_hmac,
    verify_standard_webhook,
    verify_woocommerce_hmac,
)
from pointguard.program.orders.records import member_of_order

# A refund of an order we never saw has no member; it is recorded, then dead-lettered by the
# worker as a refund of an unknown order, where an operator can see it.
UNKNOWN_MEMBER = "unknown-member"

SALEOR_EVENT = re.compile(r"[a-z0-9_]{1,64}")
# HMAC-signing senders: how to verify, the signature header, the topic header.
HMAC_SENDERS = {
    "shopify": (verify_shopify_hmac, "x-shopify-hmac-sha256", "x-shopify-topic"),
    "woocommerce": (verify_woocommerce_hmac, "x-wc-webhook-signature", "x-wc-webhook-topic"),
}

log = logging.getLogger(__name__)


@asynccontextmanager
async def _merchant_request(
    request: Request, sender: str
) -> AsyncIterator[tuple[MerchantCredentials, bytes]]:
    """The body (within the size limit) and the merchant's credentials. No connection is held
    for the rest of the request: the inbox writer has its own."""
    settings: Settings = request.app.state.settings
    merchant_id = request.path_params["merchant"]
    logs.bind(sender=sender, merchant_id=merchant_id)
    body = await _read_body(request, settings)
    credentials = None
    if MERCHANT_ID.fullmatch(merchant_id):  # no query for what cannot be a merchant id
        cache: CredentialCache = request.app.state.credentials
        credentials = await cache.load(request.app.state.engine, merchant_id)
    if credentials is None:
        raise UnknownMerchant(f"no merchant {merchant_id!r}")
    yield credentials, body


async def receive_webhook(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    async with _merchant_request(request, "standard") as (credentials, body):
        headers = request.headers
        webhook_id = headers.get("webhook-id", "")
        logs.bind(webhook_id=webhook_id)
        verify_standard_webhook(
            secrets=credentials.inbound_secrets,
            public_keys=credentials.inbound_public_keys,
            webhook_id=webhook_id,
            timestamp=headers.get("webhook-timestamp", ""),
            signature_header=headers.get("webhook-signature", ""),
            body=body,
            now=wall_clock(),  # freshness is about real time, whatever the business clock says
            tolerance_s=settings.webhook_tolerance_s,
        )
        document = json_document(body)
        webhook_id = _header(headers, "webhook-id")
        return await _record(request, request.path_params["merchant"], webhook_id, document)


@asynccontextmanager
async def _hmac_request(
    request: Request, sender: str
) -> AsyncIterator[tuple[bytes, dict[str, Any], str]]:
    """The body, its JSON object and its topic, of a Shopify- or WooCommerce-style webhook
    whose HMAC verifies (`HMAC_SENDERS` names its headers) under that sender's own key
    (`MerchantCredentials.hmac_secrets`). The topic is not signed: the adapters check the body
    against it and never dedupe on a header."""
    verify, signature_header, topic_header = HMAC_SENDERS[sender]
    async with _merchant_request(request, sender) as (credentials, body):
        headers = request.headers
        verify(
            secrets=credentials.hmac_secrets(sender),
            header=headers.get(signature_header, ""),
            body=body,
        )
        yield body, _json_object(body), _header(headers, topic_header)


async def receive_shopify(request: Request) -> JSONResponse:
    """A Shopify-style webhook (see `adapters/shopify.py`)."""
    merchant_id = request.path_params["merchant"]
    async with _hmac_request(request, "shopify") as (body, payload, topic):
        customer = None
        order_id = refunded_order(topic, payload)
        if order_id is not None:
            async with db.connection(request.app.state.engine) as pg:
                customer = await member_of_order(pg, merchant_id, order_id)
        webhook_id, canonical = shopify_to_canonical(
            topic, payload, body_digest=_digest(body), customer_of_order=customer or UNKNOWN_MEMBER
        )
        return await _record_adapted(request, webhook_id, f"shopify:{topic}", payload, canonical)


async def receive_woocommerce(request: Request) -> JSONResponse:
    """A WooCommerce-style webhook (see `adapters/woocommerce.py`)."""
    async with _hmac_request(request, "woocommerce") as (body, payload, topic):
        webhook_id, canonical = woocommerce_to_canonical(topic, payload, body_digest=_digest(body))
        return await _record_adapted(
            request, webhook_id, f"woocommerce:{topic}", payload, canonical
        )


async def receive_saleor(request: Request) -> JSONResponse:
    """A Saleor-style webhook: `Saleor-Signature`, a detached RS256 JWS (`jws.py`), verified
    with the key it names from the merchant's JWKS (`jwks.py`; 503 while that cannot be had),
    then mapped and given its dedupe id as `adapters.saleor.saleor_to_canonical` says. The sender's
    `Saleor-Domain` and `Saleor-Api-Url` never choose the keys: whoever sends them could."""
    merchant_id = request.path_params["merchant"]
    headers = request.headers
    async with _merchant_request(request, "saleor") as (credentials, body):
        signature = parse_detached_jws(headers.get("saleor-signature", ""), body)
        if credentials.jwks_url is None:
            raise KeySetNotConfigured(
                f"merchant {merchant_id!r} has no JWKS URL (pointguard merchant set-jwks)"
            )
        key_sets: KeySetCache = request.app.state.key_sets
        verify_rs256(signature, await key_sets.key(credentials.jwks_url, signature.kid))
        event = headers.get("saleor-event", "").strip().lower()
        if not SALEOR_EVENT.fullmatch(event):
            raise InvalidPayload("Saleor-Event is not an event name", field="Saleor-Event")
        payload = _json_object(body)
        webhook_id, canonical = saleor_to_canonical(event, payload, _digest(body))
        return await _record_adapted(request, webhook_id, f"saleor:{event}", payload, canonical)


async def _record_adapted(
    request: Request,
    webhook_id: str,
    sender_type: str,
    payload: dict[str, Any],
    canonical: Canonical | None,
) -> JSONResponse:
    """Record an adapter's canonical event; or, for an event the program has no use for, keep
    the payload as the sender sent it under `sender_type` and acknowledge it (so that the
    sender stops retrying, and an operator can still see it)."""
    merchant_id = request.path_params["merchant"]
    if canonical is not None:
        return await _record(request, merchant_id, webhook_id, canonical)
    logs.bind(webhook_id=webhook_id)
    row = InboxRow(merchant_id, webhook_id, sender_type, store_json(payload), True)
    return _accepted(await _inbox(request).record(row))


async def _record(
    request: Request, merchant_id: str, webhook_id: str, document: Any
) -> JSONResponse:
    """Check a canonical event and put it in the inbox (ignored if the program has no use
    for its type), then acknowledge."""
    logs.bind(webhook_id=webhook_id)
    envelope = envelope_of(document)
    event = to_program_event(webhook_id, envelope)  # validates the event's data
    row = InboxRow(merchant_id, webhook_id, envelope.type, store_json(document), event is None)
    return _accepted(await _inbox(request).record(row))


def _inbox(request: Request) -> InboxWriter:
    inbox: InboxWriter = request.app.state.inbox
    return inbox


def _accepted(recorded: Recorded) -> JSONResponse:
    metrics.count_accepted(logs.bound_fields()["sender"], replayed=recorded.replayed)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "webhook accepted",
            extra={"inbox_status": recorded.status, "replayed": recorded.replayed},
        )
    return JSONResponse(
        {
            "webhook_id": recorded.webhook_id,
            "status": recorded.status,
            "replayed": recorded.replayed,
        },
        status_code=202,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    payload = json_document(body)
    if not isinstance(payload, dict):
        raise InvalidPayload("the body must be a JSON object")
    return payload


def _header(headers: Headers, name: str) -> str:
    """A header that becomes part of an inbox row (an id, a topic): at most `MAX_TEXT_CHARS`,
    since the inbox is keyed on it, and text the database can store."""
    value = headers.get(name, "")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidPayload(f"{name} is longer than {MAX_TEXT_CHARS} characters", field=name)
    return check_storable_text(value, name)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


async def _read_body(request: Request, settings: Settings) -> bytes:
    """The body, within the size limit and the read deadline (`body_read_timeout_s` for the
    whole body, however its bytes are spaced): a sender trickling it would otherwise hold the
    connection and this task as long as it liked."""
    limit = settings.max_webhook_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    try:
        async with asyncio.timeout(settings.body_read_timeout_s):
            body = await read_at_most(
                request.stream(),
                limit,
                lambda: PayloadTooLarge(f"body is over the {limit}-byte limit"),
            )
    except TimeoutError as error:
        raise BodyReadTimeout(
            f"the body did not arrive within {settings.body_read_timeout_s:g} s"
        ) from error
    try:
        body.decode()
    except UnicodeDecodeError as error:
        raise InvalidPayload("body is not UTF-8", code="malformed_json") from error
    return body
