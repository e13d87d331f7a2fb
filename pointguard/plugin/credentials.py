"""Merchants' decrypted credentials, cached in memory for a few seconds.

One `CredentialCache` per process serves both directions: ingest verifies each webhook with
it, and the dispatcher signs each batch of deliveries with it, so neither re-reads and
re-decrypts a merchant's secrets for every request or claim.

Rules this module enforces:
- What a cached entry holds (the secrets, the keys, the endpoint URL) may be up to `ttl_s` old:
  a rotated secret or a new endpoint takes effect within `ttl_s`.
- Concurrent misses for one merchant share one load (as `KeySetCache` shares one fetch): when
  an entry expires under a burst of that merchant's webhooks, one connection reads and
  decrypts, not one per request.
- A load that fails is not kept: its waiters get its error, and the next caller loads again.
  A caller that gives up (cancelled, timed out) does not cancel the load for the others.
- An unknown merchant id is remembered as unknown for `unknown_ttl_s` (a merchant created
  meanwhile is seen after that), at most `max_unknown` of them, the oldest forgotten first: a
  flood of made-up ids costs one query per id per TTL, and bounded memory.
- At most `MAX_CONCURRENT_CREDENTIAL_LOADS` loads run at once, each on its own connection: a
  flood of made-up ids waits for them, and never holds the whole pool that the inbox and the
  workers need.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.plugin.merchants import MerchantCredentials, merchant_credentials
from pointguard.plugin.secretbox import Keys

CREDENTIALS_TTL_S = 5.0
UNKNOWN_MERCHANT_TTL_S = 5.0
# Merchant ids are at most 64 characters: ten thousand remembered take about a megabyte.
MAX_UNKNOWN_MERCHANTS = 10_000
# Well under the default pool of 10 connections (POINTGUARD_DB_POOL_SIZE).
MAX_CONCURRENT_CREDENTIAL_LOADS = 4

Load = Callable[[PgConnection, Keys, str], Awaitable[MerchantCredentials | None]]


class CredentialCache:
    """A merchant's decrypted credentials, kept for `ttl_s`, loaded as the module says."""

    def __init__(
        self,
        key: Keys,
        ttl_s: float = CREDENTIALS_TTL_S,
        *,
        unknown_ttl_s: float = UNKNOWN_MERCHANT_TTL_S,
        max_unknown: int = MAX_UNKNOWN_MERCHANTS,
        load: Load = merchant_credentials,
    ) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._unknown_ttl_s = unknown_ttl_s
        self._max_unknown = max_unknown
        self._load = load
        self._entries: dict[str, tuple[float, MerchantCredentials]] = {}
        # When each id was found unknown, oldest first (insertion order).
        self._unknown: dict[str, float] = {}
        self._loads_at_once = asyncio.Semaphore(MAX_CONCURRENT_CREDENTIAL_LOADS)
        # At most one per merchant, removed when it ends, so bounded by the concurrent misses.
        self._loading: dict[str, asyncio.Task[MerchantCredentials | None]] = {}

    async def load(self, engine: AsyncEngine, merchant_id: str) -> MerchantCredentials | None:
        """The credentials, from memory while fresh; on a miss, from the load in flight for
        this merchant or a new one. A load takes a connection of its own, never the caller's
        (nor a connection inside the caller's transaction)."""
        cached = self._entries.get(merchant_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        unknown_since = self._unknown.get(merchant_id)
        if unknown_since is not None and time.monotonic() - unknown_since < self._unknown_ttl_s:
            return None
        loading = self._loading.get(merchant_id)
        if loading is None or loading.done():  # done: ended, and its forgetting is queued
            loading = asyncio.create_task(self._read(engine, merchant_id))
            self._loading[merchant_id] = loading
            loading.add_done_callback(functools.partial(self._forget, merchant_id))
        # Shielded: a caller cancelled while waiting leaves the load to the others.
        return await asyncio.shield(loading)

    async def _read(self, engine: AsyncEngine, merchant_id: str) -> MerchantCredentials | None:
        async with self._loads_at_once, db.connection(engine) as pg:
            found = await self._load(pg, self._key, merchant_id)
        self._unknown.pop(merchant_id, None)
        if found is not None:
            self._entries[merchant_id] = (time.monotonic(), found)
            return found
        self._unknown[merchant_id] = time.monotonic()
        while len(self._unknown) > self._max_unknown:  # at most one over: one added per load
            del self._unknown[next(iter(self._unknown))]
        return None

    def _forget(self, merchant_id: str, ended: asyncio.Task[MerchantCredentials | None]) -> None:
        """Drop an ended load, unless a newer one has taken its place."""
        if self._loading.get(merchant_id) is ended:
            del self._loading[merchant_id]
