"""Merchants' decrypted credentials, cached in memory for a few seconds.

One `CredentialCache` per process serves both directions: ingest verifies each webhook with
it, and the dispatcher signs each batch of deliveries with it, so neither re-reads and
re-decrypts a merchant's secrets for every request or claim. What a cached entry holds (the
secrets, the keys, the endpoint URL) may be up to `ttl_s` old: a rotated secret or a new
endpoint takes effect within `ttl_s`. Unknown merchants are never cached.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.plugin.merchants import MerchantCredentials, merchant_credentials

CREDENTIALS_TTL_S = 5.0


class CredentialCache:
    """A merchant's decrypted credentials, kept for `ttl_s` so that each webhook does not
    re-read and re-decrypt them; a rotated secret takes effect within `ttl_s`."""

    def __init__(self, key: bytes, ttl_s: float = CREDENTIALS_TTL_S) -> None:
        self._key = key
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, MerchantCredentials]] = {}

    async def load(self, engine: AsyncEngine, merchant_id: str) -> MerchantCredentials | None:
        """The credentials, from memory while fresh; a connection is taken only on a miss,
        and never inside the caller's transaction."""
        cached = self._fresh(merchant_id)
        if cached is not None:
            return cached
        async with db.connection(engine) as pg:
            return await self.get(pg, merchant_id)

    def _fresh(self, merchant_id: str) -> MerchantCredentials | None:
        """The cached credentials if they are recent enough, without touching the database."""
        cached = self._entries.get(merchant_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        return None

    async def get(self, pg: PgConnection, merchant_id: str) -> MerchantCredentials | None:
        cached = self._fresh(merchant_id)
        if cached is not None:
            return cached
        found = await merchant_credentials(pg, self._key, merchant_id)
        if found is not None:  # unknown ids are not cached: they would let anyone fill memory
            self._entries[merchant_id] = (time.monotonic(), found)
        return found
