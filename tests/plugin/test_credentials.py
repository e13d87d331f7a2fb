"""The credential cache: decrypted credentials are reused for `ttl_s`, so a rotated secret
takes effect within it; concurrent misses share one load, and a failed load is not kept
(unknown merchants, remembered briefly: tests/security/test_slow_and_unknown_callers.py).
Loads are counted by wrapping the real read, on the real database."""

from __future__ import annotations

import asyncio

import pytest

from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.merchants import (
    create_merchant,
    merchant_credentials,
    rotate_inbound_secret,
)


class CountedLoads:
    """The cache's `load`: counts the loads, and can fail the next one or hold loads until
    `gate` is set, before reading for real with `merchant_credentials`."""

    def __init__(self) -> None:
        self.count = 0
        self.fail_next = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, pg, key, merchant_id):
        self.count += 1
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionResetError("the database went away")
        return await merchant_credentials(pg, key, merchant_id)


@pytest.fixture
def loads() -> CountedLoads:
    return CountedLoads()


async def test_credentials_are_cached_for_a_few_seconds(engine, run, secret_key):
    merchant = await run(create_merchant, secret_key, "Cache Shop")
    m = merchant.merchant_id
    cached, fresh = CredentialCache(secret_key, ttl_s=60), CredentialCache(secret_key, ttl_s=0)
    assert (await cached.load(engine, m)).inbound_secrets == (merchant.webhook_secret,)
    assert await cached.load(engine, "nobody") is None
    new_secret = await run(rotate_inbound_secret, secret_key, m)
    assert (await cached.load(engine, m)).inbound_secrets == (merchant.webhook_secret,)
    assert (await fresh.load(engine, m)).inbound_secrets == (new_secret, merchant.webhook_secret)


async def test_concurrent_misses_share_one_load(engine, run, secret_key, loads):
    merchant = await run(create_merchant, secret_key, "Busy Shop")
    m = merchant.merchant_id
    cache = CredentialCache(secret_key, ttl_s=0, load=loads)  # every call a miss but shared
    found = await asyncio.gather(*(cache.load(engine, m) for _ in range(50)))
    assert loads.count == 1
    assert {c.inbound_secrets for c in found} == {(merchant.webhook_secret,)}

    await cache.load(engine, m)  # one after the shared load ended loads again
    assert loads.count == 2
    unknown = await asyncio.gather(*(cache.load(engine, "nobody") for _ in range(20)))
    assert unknown == [None] * 20 and loads.count == 3


async def test_a_failed_load_fails_its_waiters_and_the_next_caller_loads_again(
    engine, run, secret_key, loads
):
    merchant = await run(create_merchant, secret_key, "Flaky Shop")
    cache = CredentialCache(secret_key, ttl_s=60, load=loads)
    loads.fail_next = True
    failed = await asyncio.gather(
        *(cache.load(engine, merchant.merchant_id) for _ in range(10)), return_exceptions=True
    )
    assert loads.count == 1
    assert all(isinstance(outcome, ConnectionResetError) for outcome in failed)

    found = await cache.load(engine, merchant.merchant_id)
    assert found is not None and found.inbound_secrets == (merchant.webhook_secret,)
    assert loads.count == 2
    await cache.load(engine, merchant.merchant_id)
    assert loads.count == 2  # and that one is cached


async def test_a_caller_that_gives_up_leaves_the_load_to_the_others(engine, run, secret_key, loads):
    merchant = await run(create_merchant, secret_key, "Patient Shop")
    cache = CredentialCache(secret_key, load=loads)
    loads.gate.clear()
    impatient = asyncio.create_task(cache.load(engine, merchant.merchant_id))
    patient = asyncio.create_task(cache.load(engine, merchant.merchant_id))
    await asyncio.sleep(0.05)  # both waiting on the one load
    impatient.cancel()
    loads.gate.set()
    assert (await patient).inbound_secrets == (merchant.webhook_secret,)
    assert impatient.cancelled() and loads.count == 1
