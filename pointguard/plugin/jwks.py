"""Storefronts' JSON Web Key Sets (RFC 7517), fetched over HTTP and cached per URL.

Rules this module enforces:
- A key set is fetched once and then served from memory. A `kid` it does not hold (the
  storefront rotated its key) makes us fetch it again, and so does age (`max_age_s`, so a key
  the storefront withdrew stops being trusted), but a URL is fetched at most once per
  `refetch_interval_s`, whatever happens: a stranger posting random `kid`s, or a storefront
  whose JWKS is down, cannot make us hammer it. Concurrent requests share one fetch.
- A fetch is bounded: `timeout_s` in all (connect, send, the whole body), at most
  `MAX_KEY_SET_BYTES`, no redirects, a 200 answer or nothing, and only to a public address
  (`outbound_http.py`: checked when the connection is opened, so the URL cannot reach our
  own network, nor be rebound to it through DNS).
- A caller is never told the JWKS URL (it may hold credentials) nor why a fetch failed (it
  may name our own network): an unknown key is `UnknownKeyId` and nothing more; the URL,
  without user info or query, and the failure are logged.
- When a refetch fails, the keys we hold keep verifying (an outage of the storefront's JWKS
  does not stop its webhooks). A key we do not hold is then `KeySetUnavailable` (503, try
  again later), not `UnknownKeyId` (401): it may be a new key we could not fetch.
- Only keys fit for RS256 signatures are kept: `kty` RSA, at least `MIN_RSA_BITS` bits, a
  `kid`, and no `use`, `alg` or `key_ops` saying they are for something else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from pointguard.errors import KeySetUnavailable, OutboundRequestFailed, UnknownKeyId
from pointguard.plugin.jws import b64url_decode
from pointguard.plugin.outbound_http import OutboundClient, redacted

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
DEFAULT_REFETCH_INTERVAL_S = 30.0
MAX_AGE_S = 3600.0
MAX_KEY_SET_BYTES = 64 * 1024
MAX_KEYS = 50
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str, RSAPublicKey]
    fetched_at_s: float  # on the cache's clock


def parse_key_set(document: bytes, url: str) -> dict[str, RSAPublicKey]:
    """The RS256 verification keys of a JWKS document, by `kid`; keys of other kinds are
    skipped. Raises `KeySetUnavailable` if the document is not a JWKS."""
    try:
        parsed = json.loads(document)
    except (UnicodeDecodeError, ValueError) as error:
        raise KeySetUnavailable(f"the JWKS at {url} is not JSON") from error
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise KeySetUnavailable(f'the JWKS at {url} has no "keys" list')
    if len(entries) > MAX_KEYS:
        raise KeySetUnavailable(f"the JWKS at {url} holds {len(entries)} keys, over {MAX_KEYS}")
    keys = {}
    for entry in entries:
        if isinstance(entry, dict) and _signs_rs256(entry):
            key = _rsa_key(entry)
            if key is not None:
                keys[entry["kid"]] = key
    return keys


class KeySetCache:
    """Key sets by URL, fetched as the module docstring says."""

    def __init__(
        self,
        *,
        refetch_interval_s: float = DEFAULT_REFETCH_INTERVAL_S,
        max_age_s: float = MAX_AGE_S,
        timeout_s: float = FETCH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        allow_loopback: bool | None = None,
    ) -> None:
        self._refetch_interval_s = refetch_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._allow_loopback = allow_loopback  # None: as the settings say at each fetch
        self._sets: dict[str, _KeySet] = {}
        self._attempted_at_s: dict[str, float] = {}
        self._failure: dict[str, str] = {}  # why the last fetch failed, until one succeeds
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, url: str, kid: str) -> RSAPublicKey:
        """The key `kid` of the JWKS at `url`. Raises `UnknownKeyId` if the set does not hold
        it (fetched again if allowed), `KeySetUnavailable` if it is not held and the set could
        not be fetched."""
        held = self._sets.get(url)
        if (
            held is None
            or kid not in held.keys
            or self._clock() - held.fetched_at_s > self._max_age_s
        ):
            held = await self._refresh(url)
        key = held.keys.get(kid) if held is not None else None
        if key is None and url in self._failure:
            raise KeySetUnavailable(
                "the storefront's JWKS could not be fetched; it is tried again at most every"
                f" {self._refetch_interval_s:g} s"
            )
        if key is None:
            log.warning("jwks holds no such key url=%s kid=%r", redacted(url), kid[:200])
            raise UnknownKeyId("unknown_key_id")
        return key

    async def _refresh(self, url: str) -> _KeySet | None:
        """Fetch the set again unless it was tried within the interval; the set held after."""
        async with self._locks.setdefault(url, asyncio.Lock()):
            now_s = self._clock()
            attempted_at_s = self._attempted_at_s.get(url)
            if attempted_at_s is not None and now_s - attempted_at_s < self._refetch_interval_s:
                return self._sets.get(url)  # tried just now (maybe by a request we waited for)
            self._attempted_at_s[url] = now_s
            try:
                keys = parse_key_set(await self._fetch(url), redacted(url))
            except KeySetUnavailable as error:
                self._failure[url] = str(error)
                log.warning("jwks fetch failed url=%s error=%r", redacted(url), str(error))
                return self._sets.get(url)
            self._sets[url] = _KeySet(keys, fetched_at_s=now_s)
            self._failure.pop(url, None)
            log.info("jwks fetched url=%s kids=%s", redacted(url), ",".join(sorted(keys)))
            return self._sets[url]

    async def _fetch(self, url: str) -> bytes:
        """The JWKS document at `url`: `KeySetUnavailable` (for the log) if it cannot be had."""
        shown = redacted(url)
        try:
            async with OutboundClient(allow_loopback=self._allow_loopback) as client:
                answer = await client.request(
                    "GET",
                    url,
                    headers={"accept": "application/json"},
                    deadline_s=self._timeout_s,
                    max_body_bytes=MAX_KEY_SET_BYTES,
                )
        except (OutboundRequestFailed, httpx.HTTPError) as error:
            raise KeySetUnavailable(f"fetching the JWKS at {shown} failed: {error!r}") from error
        if answer.status != 200:
            raise KeySetUnavailable(f"the JWKS at {shown} answered HTTP {answer.status}")
        if not answer.complete:
            raise KeySetUnavailable(f"the JWKS at {shown} is over {MAX_KEY_SET_BYTES} bytes")
        return answer.body


def _signs_rs256(entry: dict[str, Any]) -> bool:
    operations = entry.get("key_ops")
    return (
        entry.get("kty") == "RSA"
        and isinstance(entry.get("kid"), str)
        and bool(entry["kid"])
        and entry.get("use", "sig") == "sig"
        and entry.get("alg", "RS256") == "RS256"
        and (operations is None or (isinstance(operations, list) and "verify" in operations))
    )


def _rsa_key(entry: dict[str, Any]) -> RSAPublicKey | None:
    modulus, exponent = _b64url_int(entry.get("n")), _b64url_int(entry.get("e"))
    if modulus is None or exponent is None or modulus.bit_length() < MIN_RSA_BITS:
        return None
    try:
        return RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError:  # an exponent or modulus no RSA key has
        return None


def _b64url_int(value: object) -> int | None:
    raw = b64url_decode(value) if isinstance(value, str) and len(value) <= 2048 else None
    return int.from_bytes(raw, "big") if raw else None
