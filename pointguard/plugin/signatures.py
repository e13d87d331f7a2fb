"""Webhook signatures: a delivery is accepted only if a key we hold signed exactly these bytes,
recently.

Standard Webhooks (https://www.standardwebhooks.com): the signed content is
`{webhook-id}.{webhook-timestamp}.{raw body}`; the `webhook-signature` header holds one or more
space-separated `version,base64` signatures, and any one valid signature passes (so a sender
can sign with old and new keys during a rotation). `v1` is HMAC-SHA256 keyed with the base64
decoding of the secret after `whsec_`; `v1a` is Ed25519 over the same content. Other versions
are skipped, and a part that does not parse is a non-match, not an error. The timestamp must be
within `tolerance_s` of `now` in either direction, which bounds replays of a captured delivery.

Shopify (`X-Shopify-Hmac-Sha256`) and WooCommerce (`X-WC-Webhook-Signature`) sign the raw body
alone: base64 HMAC-SHA256 keyed with the secret's UTF-8 bytes, and carry no timestamp.

Every function here is pure: no I/O, no clock (`now` is a parameter), and only the key
generators draw randomness. Digests are compared in constant time. A failure the sender caused
raises a `WebhookRejected` subclass; a misuse by our own code (no keys configured, a malformed
configured key, a naive `now`) raises `ValueError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from datetime import datetime
from secrets import token_bytes

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pointguard.errors import BadSignature, MissingSignature, StaleTimestamp

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DEFAULT_TOLERANCE_S = 300
# Each signature costs up to one HMAC compare per secret or one Ed25519 verify per public key;
# real senders send one per active key, so a longer header is refused rather than worked through.
MAX_SIGNATURES_PER_HEADER = 16
# Twenty digits cover every 64-bit time; longer is garbage, and is refused before int() sees it.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")


def verify_standard_webhook(
    *,
    secrets: Sequence[str],
    public_keys: Sequence[bytes],
    webhook_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Return if one signature in `signature_header` is valid for the content under one of
    `secrets` (`v1`) or `public_keys` (raw 32-byte Ed25519, `v1a`); raise otherwise.

    Raises `MissingSignature` if a header is empty, `StaleTimestamp` if the timestamp is not
    whole seconds or is more than `tolerance_s` from `now`, `BadSignature` if nothing matches.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must not be negative, got {tolerance_s}")
    hmac_keys = [_standard_secret_key(secret) for secret in secrets]
    verify_keys = [_ed25519_public_key(raw) for raw in public_keys]
    if not hmac_keys and not verify_keys:
        raise ValueError("no webhook secret or public key to verify with")

    missing = [
        name
        for name, value in (
            ("webhook-id", webhook_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature_header),
        )
        if not value
    ]
    if missing:
        raise MissingSignature(f"missing webhook header(s): {', '.join(missing)}")
    _check_timestamp(timestamp, now=now, tolerance_s=tolerance_s)

    signatures = signature_header.split()
    if len(signatures) > MAX_SIGNATURES_PER_HEADER:
        raise BadSignature(
            f"webhook-signature holds {len(signatures)} signatures, "
            f"more than the {MAX_SIGNATURES_PER_HEADER} accepted"
        )
    content = _signed_content(webhook_id, timestamp, body)
    expected_v1 = [_hmac_sha256(key, content) for key in hmac_keys]
    for signature in signatures:
        version, _, encoded = signature.partition(",")
        if version not in ("v1", "v1a"):
            continue
        decoded = _b64decode(encoded)
        if decoded is None:
            continue
        if version == "v1" and matches_any(decoded, expected_v1):
            return
        if version == "v1a" and any(_ed25519_valid(key, decoded, content) for key in verify_keys):
            return
    raise BadSignature(
        "no signature in webhook-signature matches the content under the merchant's inbound"
        " keys: sign v1 with `webhook_secret` from `pointguard merchant create` (or"
        " `rotate-secret`), not `outbound_webhook_secret`, which only verifies our deliveries"
    )


def sign_standard_webhook(
    *,
    secret: str | None,
    private_key: bytes | None,
    webhook_id: str,
    timestamp: int,
    body: bytes,
) -> str:
    """The `webhook-signature` value for a delivery: `v1,...` if `secret` is given, then
    `v1a,...` if `private_key` (raw 32-byte Ed25519) is given, space-separated."""
    if secret is None and private_key is None:
        raise ValueError("signing needs a secret, a private key, or both")
    content = _signed_content(webhook_id, str(timestamp), body)
    signatures = []
    if secret is not None:
        signatures.append("v1," + _b64encode(_hmac_sha256(_standard_secret_key(secret), content)))
    if private_key is not None:
        signing_key = Ed25519PrivateKey.from_private_bytes(private_key)
        signatures.append("v1a," + _b64encode(signing_key.sign(content)))
    return " ".join(signatures)


def standard_webhook_headers(
    *,
    secret: str | None,
    private_key: bytes | None,
    webhook_id: str,
    timestamp: int,
    body: bytes,
) -> dict[str, str]:
    """The headers of a signed JSON delivery: `webhook-id`, `webhook-timestamp` and the
    `webhook-signature` of `sign_standard_webhook`, with the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(
            secret=secret,
            private_key=private_key,
            webhook_id=webhook_id,
            timestamp=timestamp,
            body=body,
        ),
    }


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + _b64encode(token_bytes(SECRET_BYTES))


def new_ed25519_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as raw bytes: (32-byte private key, 32-byte public key)."""
    private_key = Ed25519PrivateKey.generate()
    return private_key.private_bytes_raw(), private_key.public_key().public_bytes_raw()


def verify_shopify_hmac(*, secrets: Sequence[str], header: str, body: bytes) -> None:
    """Return if `header` is the base64 HMAC-SHA256 of `body` under one of `secrets` (each
    used as its UTF-8 bytes); raise `MissingSignature` or `BadSignature` otherwise."""
    if not secrets:
        raise ValueError("no webhook secret to verify with")
    if not header:
        raise MissingSignature("missing body signature header")
    decoded = _b64decode(header)
    expected = [_hmac_sha256(secret.encode(), body) for secret in secrets]
    if decoded is None or not matches_any(decoded, expected):
        raise BadSignature("body signature header does not match the body under our secrets")


# WooCommerce's X-WC-Webhook-Signature is the same algorithm over the same bytes.
verify_woocommerce_hmac = verify_shopify_hmac


def _check_timestamp(timestamp: str, *, now: datetime, tolerance_s: int) -> None:
    if not _TIMESTAMP.fullmatch(timestamp):
        raise StaleTimestamp(
            f"webhook-timestamp {timestamp[:32]!r} is not a Unix time in whole seconds"
        )
    # Whole seconds on both sides, so the boundary is exact: tolerance_s away passes.
    age_s = math.floor(now.timestamp()) - int(timestamp)
    if age_s > tolerance_s:
        raise StaleTimestamp(
            f"webhook-timestamp is too old: {age_s} s before now, "
            f"{age_s - tolerance_s} s beyond the {tolerance_s} s tolerance"
        )
    if -age_s > tolerance_s:
        raise StaleTimestamp(
            f"webhook-timestamp is in the future: {-age_s} s after now, "
            f"{-age_s - tolerance_s} s beyond the {tolerance_s} s tolerance"
        )


def _signed_content(webhook_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def _standard_secret_key(secret: str) -> bytes:
    # The prefix is optional, as in the official libraries; the key is what follows it.
    encoded = secret.removeprefix(SECRET_PREFIX)
    # Some senders drop base64 padding from their secrets; restore it before the strict decode.
    key = _b64decode(encoded + "=" * (-len(encoded) % 4))
    if not key:
        # Never echo the secret itself into an error.
        raise ValueError(f"a webhook secret is not {SECRET_PREFIX} followed by non-empty base64")
    return key


def _ed25519_public_key(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 raw bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _ed25519_valid(key: Ed25519PublicKey, signature: bytes, content: bytes) -> bool:
    try:
        key.verify(signature, content)
    except InvalidSignature:
        return False
    return True


def _hmac_sha256(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def matches_any(candidate: bytes, expected: Sequence[bytes]) -> bool:
    """Constant-time: compared with every expected value even after a match, so that timing
    does not reveal which one matched."""
    results = [hmac.compare_digest(candidate, digest) for digest in expected]
    return any(results)


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (no stray characters), or None if it is not."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
