"""The credential cache: decrypted credentials are reused for `ttl_s`, so a rotated secret
takes effect within it, and unknown merchants are never cached."""

from __future__ import annotations

from pointguard import db
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.merchants import create_merchant, rotate_inbound_secret


async def test_credentials_are_cached_for_a_few_seconds(engine, run, secret_key):
    key = secret_key
    merchant = await run(create_merchant, key, "Cache Shop")
    cached, fresh = CredentialCache(key, ttl_s=60), CredentialCache(key, ttl_s=0)
    async with db.connection(engine) as pg:
        assert (await cached.get(pg, merchant.merchant_id)).inbound_secrets == (
            merchant.webhook_secret,
        )
        assert await cached.get(pg, "nobody") is None
    new_secret = await run(rotate_inbound_secret, key, merchant.merchant_id)
    async with db.connection(engine) as pg:
        assert (await cached.get(pg, merchant.merchant_id)).inbound_secrets == (
            merchant.webhook_secret,
        )
        assert (await fresh.get(pg, merchant.merchant_id)).inbound_secrets == (
            new_secret,
            merchant.webhook_secret,
        )
