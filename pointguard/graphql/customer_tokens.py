"""Customer tokens: what a storefront gives its signed-in customer's browser so that the
customer's frontend can call the GraphQL API as that one member, for a short while.

A token is a compact JWT (RFC 7519), so any JWT library mints one. Claims: `iss` the merchant
id, `sub` the member id (the storefront's customer id), `aud` "pointguard", `exp` (at most
`MAX_LIFETIME_S` ahead), and optionally `iat`. Two ways to sign it, both with a key the merchant
already has, so nothing new is stored here:
- HS256 with the merchant's customer-token secret, `customer_` and a key derived from the
  webhook secret (`merchant create` prints it; it follows the webhook secret through
  rotations, and being derived it is never the webhook secret itself);
- EdDSA (Ed25519) with the private key whose public key the merchant registered for signing
  its webhooks (`merchant set-sender-key`).
The algorithm is one of those two, checked before any key is used, so a token cannot choose
`none` or make a public key serve as an HMAC secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pointguard.errors import Unauthorized
from pointguard.plugin.jws import b64url_decode
from pointguard.plugin.merchants import ADAPTER_SECRETS, MerchantCredentials, sender_secret

AUDIENCE = "pointguard"
TOKEN_SECRET_SENDER = "customer"  # the secret is `sender_secret(webhook secret, "customer")`
MAX_LIFETIME_S = 24 * 3600  # a token further from expiry than this is refused: keep them short
CLOCK_SKEW_S = 60  # how far the storefront's clock may be from ours
MAX_TOKEN_CHARS = 4096
DEFAULT_LIFETIME_S = 15 * 60
HS256 = "HS256"
EDDSA = "EdDSA"


def customer_token_secret(webhook_secret: str) -> str:
    """The HS256 secret a storefront signs its customers' tokens with, derived from its
    webhook secret (`customer_…`)."""
    return sender_secret(webhook_secret, TOKEN_SECRET_SENDER)


def derived_secrets(webhook_secret: str) -> dict[str, str]:
    """What the shop's admin is given with a webhook secret, derived from it: the key each
    HMAC sender signs with until the shop owner sets its own (`{sender}_webhook_secret`), and
    the customer-token secret. `merchant create`, `rotate-secret` and GraphQL's
    `rotateWebhookSecret` answer these."""
    return {
        **{f"{s}_webhook_secret": sender_secret(webhook_secret, s) for s in ADAPTER_SECRETS},
        "customer_token_secret": customer_token_secret(webhook_secret),
    }


def customer_token_secrets(credentials: MerchantCredentials) -> tuple[str, ...]:
    """The HS256 secrets tokens of this merchant may be signed with: one per active webhook
    secret, newest first, so a webhook secret rollover keeps tokens working."""
    return tuple(customer_token_secret(s) for s in credentials.inbound_secrets)


def mint_customer_token(
    secret: str,
    merchant_id: str,
    member_id: str,
    *,
    now: datetime,
    lifetime_s: int = DEFAULT_LIFETIME_S,
) -> str:
    """An HS256 token for `member_id`, as a storefront would mint it (the docs show the same in
    JavaScript); for the CLI, the demo and the tests."""
    issued = int(now.timestamp())
    claims = {
        "iss": merchant_id,
        "sub": member_id,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + lifetime_s,
    }
    signing_input = _b64(_json({"alg": HS256, "typ": "JWT"})) + "." + _b64(_json(claims))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def token_issuer(token: str) -> str:
    """The merchant a token claims to come from, unverified: which keys to check it with.
    Raises `Unauthorized` for anything that is not a token of ours."""
    return str(_parse(token)[1]["iss"])


def verify_customer_token(token: str, credentials: MerchantCredentials, now: datetime) -> str:
    """The member id of a valid token of `credentials`' merchant; `Unauthorized` otherwise."""
    header, claims, signing_input, signature = _parse(token)
    if claims["iss"] != credentials.merchant_id:
        raise Unauthorized("the customer token is for another merchant")
    if header["alg"] == HS256:
        expected = [
            hmac.new(s.encode(), signing_input, hashlib.sha256).digest()
            for s in customer_token_secrets(credentials)
        ]
        valid = any(hmac.compare_digest(e, signature) for e in expected)
    else:
        valid = any(
            _ed25519_valid(k, signature, signing_input) for k in credentials.inbound_public_keys
        )
    if not valid:
        raise Unauthorized("the customer token's signature does not verify")
    _check_times(claims, now)
    return str(claims["sub"])


def _parse(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized(f"a customer token has at most {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("not a customer token (a JWT: three dot-separated parts)")
    header, claims = (_json_part(part) for part in parts[:2])
    signature = b64url_decode(parts[2])
    if header is None or claims is None or signature is None:
        raise Unauthorized("not a customer token: a part is not base64url JSON")
    if header.get("alg") not in (HS256, EDDSA):
        raise Unauthorized(
            f"a customer token is signed with HS256 or EdDSA, not {header.get('alg')!r}"
        )
    for name, kind in (("iss", str), ("sub", str), ("exp", int)):
        if not isinstance(claims.get(name), kind) or isinstance(claims.get(name), bool):
            raise Unauthorized(f"the customer token has no valid {name!r} claim")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def _check_times(claims: Mapping[str, Any], now: datetime) -> None:
    audience = claims.get("aud")
    if audience != AUDIENCE and not (isinstance(audience, list) and AUDIENCE in audience):
        raise Unauthorized(f"the customer token's audience must be {AUDIENCE!r}")
    at = now.timestamp()
    if claims["exp"] + CLOCK_SKEW_S < at:
        raise Unauthorized("the customer token has expired: mint a new one")
    if claims["exp"] - at > MAX_LIFETIME_S + CLOCK_SKEW_S:
        raise Unauthorized(
            f"the customer token expires too far ahead: at most {MAX_LIFETIME_S} s from now"
        )


def _ed25519_valid(public_key: bytes, signature: bytes, signing_input: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signing_input)
    except (InvalidSignature, ValueError):
        return False
    return True


def _json_part(part: str) -> dict[str, Any] | None:
    raw = b64url_decode(part)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
