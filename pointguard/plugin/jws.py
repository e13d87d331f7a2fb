"""Detached JWS signatures (RFC 7515 compact form, RFC 7797 unencoded payload), as Saleor-style
senders put in `Saleor-Signature`: a delivery is accepted only if the storefront's RS256 key
signed exactly these body bytes.

The header value is `<base64url protected header>..<base64url signature>`: the payload part is
empty because the payload is the request body, and the header says `"b64": false`, listed in
`crit` (RFC 7797): the signing input is `ASCII(header part) || "." || raw body`, so the bytes
verified are the bytes received, with no re-encoding. Saleor signs this way (PyJWT's
`is_payload_detached=True`); a header without `b64: false` is refused rather than read another
way. RS256 (RSASSA PKCS#1 v1.5 with SHA-256) is the only algorithm accepted, and it is checked
before any key is looked up, so a header cannot choose a weaker algorithm or `none`. A `crit`
parameter other than `b64` is one we do not understand, and RFC 7515 says to refuse it.

Every function here is pure. A failure the sender caused raises a `WebhookRejected` subclass.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from pointguard.errors import BadSignature, MissingKeyId, MissingSignature, UnsupportedAlgorithm

ALGORITHM = "RS256"
UNDERSTOOD_CRITICAL = frozenset({"b64"})
# A real protected header is about 100 characters and an RS256 signature of a 4096-bit key 683;
# anything far longer is refused before it is decoded.
MAX_HEADER_CHARS = 1024
MAX_SIGNATURE_CHARS = 2048
MAX_KID_CHARS = 200
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class DetachedJws:
    """A parsed signature: the key it names, and the bytes and signature to check with it."""

    kid: str
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)


def parse_detached_jws(value: str, payload: bytes) -> DetachedJws:
    """Parse a compact JWS with a detached `payload`. Raises `MissingSignature` when `value` is
    empty, `BadSignature` when it is not such a JWS, `UnsupportedAlgorithm` for an `alg` other
    than RS256, and `MissingKeyId` when it names no key."""
    if not value:
        raise MissingSignature("missing Saleor-Signature header")
    parts = value.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise BadSignature(
            "Saleor-Signature is not a compact JWS with a detached payload"
            " (`<header>..<signature>`)"
        )
    header_part, _, signature_part = parts
    if len(header_part) > MAX_HEADER_CHARS or len(signature_part) > MAX_SIGNATURE_CHARS:
        raise BadSignature("Saleor-Signature is longer than any RS256 JWS")
    header = _header(header_part)
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise UnsupportedAlgorithm(
            f"Saleor-Signature is signed with alg {str(algorithm)[:20]!r}; only RS256 is accepted"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS:
        raise MissingKeyId("Saleor-Signature names no key: its header has no usable `kid`")
    _check_unencoded(header)
    signature = b64url_decode(signature_part)
    if not signature:
        raise BadSignature("the signature part of Saleor-Signature is not base64url")
    return DetachedJws(
        kid=kid, signing_input=header_part.encode("ascii") + b"." + payload, signature=signature
    )


def verify_rs256(jws: DetachedJws, key: RSAPublicKey) -> None:
    """Return if `key` made `jws.signature` over `jws.signing_input`; raise `BadSignature`."""
    try:
        key.verify(jws.signature, jws.signing_input, PKCS1v15(), SHA256())
    except InvalidSignature as error:
        raise BadSignature(
            f"Saleor-Signature does not match the body under key {jws.kid!r}"
        ) from error


def _header(part: str) -> dict[str, Any]:
    raw = b64url_decode(part)
    try:
        header = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise BadSignature("the header of Saleor-Signature is not a base64url JSON object")
    return header


def _check_unencoded(header: dict[str, Any]) -> None:
    """The header must say RFC 7797's unencoded payload, and nothing else critical."""
    critical = header.get("crit")
    if not isinstance(critical, list) or not all(isinstance(name, str) for name in critical):
        raise BadSignature("Saleor-Signature's header has no `crit` list of names")
    not_understood = sorted(set(critical) - UNDERSTOOD_CRITICAL)
    if not_understood:
        raise BadSignature(
            f"Saleor-Signature's header marks {not_understood[:5]} critical, which we do not"
            " understand"
        )
    if header.get("b64") is not False or "b64" not in critical:
        raise BadSignature(
            "Saleor-Signature must sign the raw body: `b64: false`, listed in `crit` (RFC 7797)"
        )


def b64url_decode(text: str) -> bytes | None:
    """Strict unpadded base64url, or None if it is not."""
    if not _BASE64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
