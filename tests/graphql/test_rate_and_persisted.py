"""The per-credential rate limit (429 with Retry-After, in GraphQL's error shape) and
persisted queries (Apollo's automatic protocol: a hash in place of the query text)."""

from __future__ import annotations

import hashlib

import pytest

from pointguard.errors import RateLimited
from pointguard.graphql.rate_limit import RateLimiter
from tests.graphql.conftest import NOW, new_shop
from tests.plugin.conftest import SECRET_KEY

BALANCE = "{ me { balance { available } } }"
HASH = hashlib.sha256(BALANCE.encode()).hexdigest()


def test_a_bucket_holds_two_seconds_and_refills_at_the_rate():
    limiter = RateLimiter(rate_per_s=2)
    for _ in range(4):
        limiter.spend("ann", now_s=100.0)
    with pytest.raises(RateLimited) as refused:
        limiter.spend("ann", now_s=100.0)
    assert refused.value.retry_after_s == 1
    limiter.spend("bob", now_s=100.0)  # each caller has a bucket of its own
    limiter.spend("ann", now_s=100.5)  # half a second: one request back
    with pytest.raises(RateLimited):
        limiter.spend("ann", now_s=100.5)


async def test_a_caller_over_its_rate_gets_a_429_and_others_do_not(open_app, run):
    from tests.graphql.conftest import Shop

    merchant = await new_shop(run, "Busy Shop")
    settings = {"POINTGUARD_SECRET_KEY": SECRET_KEY, "POINTGUARD_GRAPHQL_CUSTOMER_RATE_PER_S": "1"}
    async with open_app(clock=lambda: NOW, **settings) as (_, client):
        shop = Shop(merchant, client)
        for _ in range(2):  # a burst of two seconds' worth
            assert "data" in await shop.query(BALANCE, shop.customer("ann"))
        response = await client.post(
            "/graphql", json={"query": BALANCE}, headers=shop.customer("ann")
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "rate_limited"}
        assert error["message"].startswith("too many requests from this credential")
        assert "data" in await shop.query(BALANCE, shop.customer("bob"))


async def test_a_persisted_query_is_sent_as_its_hash_after_the_first_time(shop):
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": HASH}}

    async def post(body):
        return await shop.client.post("/graphql", json=body, headers=shop.customer("ann"))

    unknown = await post({"extensions": persisted})
    assert unknown.status_code == 200
    assert unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    with_text = await post({"query": BALANCE, "extensions": persisted})
    assert with_text.json() == {"data": {"me": {"balance": {"available": 1000}}}}
    by_hash = await post({"extensions": persisted})
    assert by_hash.json() == with_text.json()

    wrong = await post({"query": "{ me { memberId } }", "extensions": persisted})
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["extensions"] == {"code": "query_refused"}
    malformed = await post({"extensions": {"persistedQuery": {"version": 2}}})
    assert malformed.status_code == 400
