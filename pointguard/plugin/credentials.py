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
- Unknown merchants are never cached: they would let anyone fill memory.
"""

from __future__ import annotations

import asyncio
import functools
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.plugin.merchants import MerchantCredentials, merchant_credentials
from pointguard.plugin.secretbox import Keys

CREDENTIALS_TTL_S = 5.0


class CredentialCache:
    """A merchant's decrypted credentials, kept for `ttl_s`, loaded as the module says."""

    def __init__(self, key: Keys, ttl_s: float = CREDENTIALS_TTL_S) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, MerchantCredentials]] = {}
        # At most one per merchant, removed when it ends, so bounded by the concurrent misses.
        self._loading: dict[str, asyncio.Task[MerchantCredentials | None]] = {}

    async def load(self, engine: AsyncEngine, merchant_id: str) -> MerchantCredentials | None:
        """The credentials, from memory while fresh; on a miss, from the load in flight for
        this merchant or a new one. A load takes a connection of its own, never the caller's
        (nor a connection inside the caller's transaction)."""
        cached = self._entries.get(merchant_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        loading = self._loading.get(merchant_id)
        if loading is None or loading.done():  # done: ended, and its forgetting is queued
            loading = asyncio.create_task(self._read(engine, merchant_id))
            self._loading[merchant_id] = loading
            loading.add_done_callback(functools.partial(self._forget, merchant_id))
        # Shielded: a caller cancelled while waiting leaves the load to the others.
        return await asyncio.shield(loading)

    async def _read(self, engine: AsyncEngine, merchant_id: str) -> MerchantCredentials | None:
        async with db.connection(engine) as pg:
            found = await merchant_credentials(pg, self._key, merchant_id)
        if found is not None:
            self._entries[merchant_id] = (time.monotonic(), found)
        return found

    def _forget(self, merchant_id: str, ended: asyncio.Task[MerchantCredentials | None]) -> None:
        """Drop an ended load, unless a newer one has taken its place."""
        if self._loading.get(merchant_id) is ended:
            del self._loading[merchant_id]
