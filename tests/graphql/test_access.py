"""Who may call what at `/graphql`: credentials are checked before anything runs, each role
reaches only its own operations, one merchant's credential never reaches another's data, and
oversized or abusive queries are refused with a clear error. Nothing refused changes the
ledger."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pointguard.graphql.customer_tokens import customer_token_secret, mint_customer_token
from pointguard.ledger import member_balances
from pointguard.plugin.merchants import set_inbound_public_key
from tests.graphql.conftest import CART, NOW, new_shop
from tests.graphql.test_checkout_api import CAPTURE, QUOTE, RESERVE
from tests.plugin.conftest import SECRET_KEY

BALANCE = "{ me { balance { available } } }"


async def refused(shop, headers, status, query=BALANCE):
    response = await shop.client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    return error


async def test_a_request_without_a_valid_credential_is_a_401_in_graphql_shape(shop):
    error = await refused(shop, {}, 401)
    assert error["extensions"] == {"code": "unauthorized"}
    assert "Authorization: Bearer" in error["message"]
    unknown = await refused(shop, {"authorization": "Bearer pgk_" + "x" * 32}, 401)
    assert unknown["message"] == "unknown or revoked API key"
    garbage = await refused(shop, {"authorization": "Bearer not-a-token"}, 401)
    assert garbage["message"].startswith("not a customer token")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"now": NOW - timedelta(hours=1)}, "the customer token has expired: mint a new one"),
        ({"secret": "customer_wrong"}, "the customer token's signature does not verify"),
        ({"lifetime_s": 3 * 86_400}, "the customer token expires too far ahead"),
    ],
)
async def test_a_bad_customer_token_is_refused(shop, change, message):
    secret = change.pop("secret", customer_token_secret(shop.merchant.webhook_secret))
    token = mint_customer_token(
        secret, shop.merchant_id, "ann", now=change.pop("now", NOW), **change
    )
    error = await refused(shop, {"authorization": f"Bearer {token}"}, 401)
    assert error["message"].startswith(message)


async def test_an_eddsa_token_signed_with_the_merchants_sender_key_works(shop, run):
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    await run(set_inbound_public_key, base64.b64decode(SECRET_KEY), shop.merchant_id, public)
    hs256 = shop.customer("ann")["authorization"].removeprefix("Bearer ")
    header, claims, _ = hs256.split(".")
    eddsa_header = base64.urlsafe_b64encode(b'{"alg":"EdDSA","typ":"JWT"}').rstrip(b"=")
    signing_input = eddsa_header + b"." + claims.encode()
    signature = base64.urlsafe_b64encode(private.sign(signing_input)).rstrip(b"=")
    token = (signing_input + b"." + signature).decode()
    answer = await shop.query(BALANCE, {"authorization": f"Bearer {token}"})
    assert answer["data"]["me"]["balance"]["available"] == 1000
    assert header  # the HS256 token's header was replaced, not reused


async def test_each_role_reaches_only_its_own_operations(shop, run):
    as_storefront = await shop.query(BALANCE, shop.storefront)
    assert as_storefront["errors"][0]["extensions"] == {"code": "forbidden"}
    assert as_storefront["errors"][0]["message"] == (
        "this operation needs a customer credential; this request has a storefront one"
    )
    variables = {"member": "ann", "reward": "five-off", "cart": CART, "key": "k1"}
    as_customer = await shop.query(RESERVE, shop.customer("ann"), **variables)
    assert as_customer["errors"][0]["extensions"] == {"code": "forbidden"}
    quote = await shop.query(QUOTE, shop.customer("ann"), member="ann", cart=CART)
    assert quote["errors"][0]["extensions"] == {"code": "forbidden"}
    assert (await run(member_balances, shop.merchant_id, "ann")).reserved_points == 0


async def test_another_merchants_credentials_find_nothing_and_change_nothing(shop, run):
    other = await new_shop(run, "Other Shop")
    theirs = {"authorization": f"Bearer {other.api_key}"}
    variables = {"member": "ann", "reward": "five-off", "cart": CART, "key": "k"}
    mine = (await shop.query(RESERVE, shop.storefront, **variables))["data"]
    redemption_id = mine["reserveRedemption"]["id"]

    # `ann` exists at both shops, and each key sees its own ann only.
    other_ann = await shop.query(RESERVE, theirs, **variables)
    assert other_ann["data"]["reserveRedemption"]["__typename"] == "Redemption"
    assert other_ann["data"]["reserveRedemption"]["id"] != redemption_id
    capture = await shop.query(CAPTURE, theirs, id=redemption_id)
    assert capture["data"]["captureRedemption"]["__typename"] == "NotFound"
    assert (await run(member_balances, shop.merchant_id, "ann")).reserved_points == 500
    # A token the other shop signed for this shop's merchant id does not verify here.
    forged = mint_customer_token(
        customer_token_secret(other.webhook_secret), shop.merchant_id, "ann", now=NOW
    )
    await refused(shop, {"authorization": f"Bearer {forged}"}, 401)


async def test_depth_and_alias_bombs_and_huge_bodies_are_refused(shop):
    fields = "fields { type { " * 6 + "name" + " } }" * 6
    bomb = await shop.query("{ __schema { types { " + fields + " } } }", shop.customer("ann"))
    assert bomb["errors"][0]["message"] == "Maximum introspection depth exceeded"
    assert bomb["errors"][0]["extensions"] == {"code": "invalid_query"}
    aliases = "{ me { " + " ".join(f"a{i}: balance {{ available }}" for i in range(200)) + " } }"
    bomb = await shop.query(aliases, shop.customer("ann"))
    assert bomb["errors"][0]["message"] == "200 aliases found. Allowed: 30"
    huge = {"query": BALANCE + " " * (1024 * 1024)}
    response = await shop.client.post("/graphql", json=huge, headers=shop.customer("ann"))
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"] == {"code": "query_refused"}


async def test_an_unexpected_error_is_masked_and_logged(shop, monkeypatch, caplog):
    from pointguard.graphql import customer

    async def broken(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(customer, "member_balances", broken)
    answer = await shop.query(BALANCE, shop.customer("ann"))
    [error] = answer["errors"]
    assert error["message"] == "internal error; see the server's logs"
    assert error["extensions"] == {"code": "internal_error"}
    assert "SELECT secret" in caplog.text  # in the server's log, never in the answer


async def test_a_nul_character_is_refused_whichever_way_it_is_written(shop, run):
    query = "query Q($m: ID!) { quoteRedemption(memberId: $m, cart: {subtotalMinor: 1}) { name } }"
    response = await shop.client.post(
        "/graphql", json={"query": query, "variables": {"m": "a\x00b"}}, headers=shop.storefront
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "query_refused"}
    literal = '{ quoteRedemption(memberId: "a\\u{0}b", cart: {subtotalMinor: 1}) { name } }'
    answer = await shop.query(literal, shop.storefront)
    assert answer["errors"][0]["extensions"] == {"code": "query_refused"}, answer


async def test_production_mode_has_no_graphiql_and_no_introspection(open_app, run):
    from tests.graphql.conftest import Shop
    from tests.plugin.conftest import SECRET_KEY

    merchant = await new_shop(run, "Prod Shop")
    introspect = "{ __schema { queryType { name } } }"
    async with open_app(clock=lambda: NOW, POINTGUARD_SECRET_KEY=SECRET_KEY) as (_, client):
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        shop = Shop(merchant, client)
        assert (await shop.query(introspect, shop.storefront))["data"] is not None
    production = {"POINTGUARD_SECRET_KEY": SECRET_KEY, "POINTGUARD_PRODUCTION": "1"}
    async with open_app(clock=lambda: NOW, **production) as (_, client):
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404
        assert page.json()["errors"][0]["message"] == "send a query: GraphiQL is off in production"
        shop = Shop(merchant, client)
        refused = await shop.query(introspect, shop.storefront)
        assert "introspection" in refused["errors"][0]["message"].lower()
        assert refused["errors"][0]["extensions"] == {"code": "invalid_query"}
        assert "data" in await shop.query(BALANCE, shop.customer("ann"))


def test_a_query_is_validated_once_then_answered_from_the_cache():
    from strawberry.extensions.validation_cache import _get_validate_cache

    from pointguard.graphql.schema import CACHED_DOCUMENTS, build_schema

    schema = build_schema(production=False)
    cache = _get_validate_cache(CACHED_DOCUMENTS)
    query = "{ __typename __schema { queryType { name } } }"
    before = cache.cache_info()
    for _ in range(3):
        schema.execute_sync(query)
    after = cache.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
