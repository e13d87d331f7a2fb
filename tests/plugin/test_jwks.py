"""A storefront's JWKS, served by a real HTTP server on 127.0.0.1: fetched once, fetched again
for a rotated key but never more than once per interval, bounded in time, and keys of other
kinds skipped."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pointguard.errors import KeySetUnavailable, UnknownKeyId
from pointguard.plugin.jwks import KeySetCache, parse_key_set
from pointguard.plugin.jws import parse_detached_jws, verify_rs256


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_a_key_set_is_fetched_once_and_its_keys_verify(storefront):
    cache = KeySetCache()
    body = b'{"order": {"id": "1"}}'
    jws = parse_detached_jws(storefront.sign(body, "k1"), body)
    verify_rs256(jws, await cache.key(storefront.url, "k1"))
    verify_rs256(jws, await cache.key(storefront.url, "k1"))
    assert storefront.fetches == 1


async def test_a_rotated_key_is_fetched_and_an_unknown_one_refused(storefront):
    clock = Clock()
    cache = KeySetCache(refetch_interval_s=30, clock=clock)
    await cache.key(storefront.url, "k1")
    storefront.add_key("k2")
    clock.now_s += 30
    await cache.key(storefront.url, "k2")  # not held: fetched again
    assert storefront.fetches == 2
    clock.now_s += 30
    with pytest.raises(UnknownKeyId):
        await cache.key(storefront.url, "k3")  # fetched again, and still not there
    assert storefront.fetches == 3


async def test_random_kids_cannot_make_us_hammer_the_storefront(storefront):
    clock = Clock()
    cache = KeySetCache(refetch_interval_s=30, clock=clock)
    await cache.key(storefront.url, "k1")
    for n in range(50):
        with pytest.raises(UnknownKeyId):
            await cache.key(storefront.url, f"random-{n}")
        clock.now_s += 0.5
    assert storefront.fetches == 1  # 25 s: still within the interval
    clock.now_s += 5
    with pytest.raises(UnknownKeyId):
        await cache.key(storefront.url, "random-again")
    assert storefront.fetches == 2
    await cache.key(storefront.url, "k1")  # the known key is served all along
    assert storefront.fetches == 2


async def test_concurrent_requests_for_a_new_key_share_one_fetch(storefront):
    cache = KeySetCache(refetch_interval_s=30)
    storefront.delay_s = 0.2
    keys = await asyncio.gather(*(cache.key(storefront.url, "k1") for _ in range(20)))
    assert len({id(key) for key in keys}) == 1
    assert storefront.fetches == 1


async def test_a_key_set_that_cannot_be_fetched_is_unavailable_and_not_hammered(storefront, caplog):
    clock = Clock()
    cache = KeySetCache(refetch_interval_s=30, clock=clock)
    storefront.status = 500
    for _ in range(3):
        with pytest.raises(KeySetUnavailable, match="tried again at most every 30 s"):
            await cache.key(storefront.url, "k1")
    assert storefront.fetches == 1
    assert "answered HTTP 500" in caplog.text  # why, for the operator only
    storefront.status = 200
    clock.now_s += 30
    await cache.key(storefront.url, "k1")
    assert storefront.fetches == 2


async def test_keys_held_keep_verifying_while_the_storefront_is_down(storefront, caplog):
    clock = Clock()
    cache = KeySetCache(refetch_interval_s=30, max_age_s=600, clock=clock)
    held = await cache.key(storefront.url, "k1")
    storefront.status = 503
    clock.now_s += 601  # too old: fetched again, which fails
    assert await cache.key(storefront.url, "k1") is held
    assert storefront.fetches == 2
    with pytest.raises(KeySetUnavailable):
        await cache.key(storefront.url, "k2")  # maybe a new key: we cannot tell, try later
    assert "answered HTTP 503" in caplog.text


async def test_an_old_key_set_is_fetched_again_so_withdrawn_keys_stop_verifying(storefront):
    clock = Clock()
    cache = KeySetCache(refetch_interval_s=30, max_age_s=600, clock=clock)
    await cache.key(storefront.url, "k1")
    storefront.add_key("k2")
    del storefront.keys["k1"]
    clock.now_s += 601
    with pytest.raises(UnknownKeyId):
        await cache.key(storefront.url, "k1")
    assert storefront.fetches == 2


async def test_a_slow_storefront_is_given_up_on(storefront, caplog):
    cache = KeySetCache(timeout_s=0.2)
    storefront.delay_s = 2
    with pytest.raises(KeySetUnavailable):
        await cache.key(storefront.url, "k1")
    assert "no complete answer within 0.2 s" in caplog.text


async def test_no_server_at_all_is_unavailable(storefront, caplog):
    cache = KeySetCache()
    url = storefront.url.replace("/.well-known/", "/nothing/")
    with pytest.raises(KeySetUnavailable):
        await cache.key(url, "k1")
    assert "answered HTTP 404" in caplog.text
    with pytest.raises(KeySetUnavailable):
        await cache.key("http://127.0.0.1:9/jwks.json", "k1")
    assert "failed: ConnectError" in caplog.text


def test_only_rs256_signing_keys_are_kept(storefront):
    storefront.add_key("k2")
    storefront.add_key("k3")
    storefront.add_key("k4")
    document = storefront.jwks()
    entries = {entry["kid"]: entry for entry in document["keys"]}
    entries["k2"]["use"] = "enc"
    entries["k3"]["alg"] = "RS512"
    entries["k4"]["key_ops"] = ["encrypt"]
    short = {**entries["k1"], "kid": "short", "n": entries["k1"]["n"][:100]}
    no_kid = {key: value for key, value in entries["k1"].items() if key != "kid"}
    elliptic = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    ec_key = {"kty": "EC", "kid": "ec", "crv": "P-256", "x": str(elliptic.x), "y": "0"}
    document["keys"] += [short, no_kid, ec_key, "not an object"]
    assert set(parse_key_set(json.dumps(document).encode(), "test")) == {"k1"}


@pytest.mark.parametrize(
    "document",
    [b"not json", b"[]", b'{"keys": {}}', json.dumps({"keys": [{}] * 51}).encode()],
)
def test_documents_that_are_not_a_key_set_are_unavailable(document):
    with pytest.raises(KeySetUnavailable):
        parse_key_set(document, "test")
