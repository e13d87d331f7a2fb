"""A shop's admin through `/graphql` (an admin API key): the program read, validated and
published, API keys made and revoked, the webhook secret rotated, analytics, dead letters
replayed; and the installation's operator creating a merchant."""

from __future__ import annotations

from pointguard.graphql.customer_tokens import mint_customer_token
from pointguard.plugin.api_keys import KeyRole, find_api_key, new_api_key
from tests.graphql.conftest import NOW, OPERATOR_KEY, PROGRAM

PROGRAM_QUERY = "{ adminProgram { version document versions { version effectiveFrom } } }"
VALIDATE = """
mutation Validate($document: String!) {
  validateProgram(document: $document) { valid problems { field message } }
}
"""
PUBLISH = """
mutation Publish($document: String!) {
  publishProgram(document: $document) {
    __typename
    ... on ProgramPublished { version effectiveFrom }
    ... on ProgramRejected { code problems { field message } }
  }
}
"""
CREATE_KEY = """
mutation Create($role: KeyRole!, $name: String!) {
  createApiKey(role: $role, name: $name) {
    __typename
    ... on CreatedApiKey { name role key }
    ... on Problem { code message }
  }
}
"""
REVOKE_KEY = """
mutation Revoke($name: String!) {
  revokeApiKey(name: $name) { __typename ... on Problem { code } }
}
"""
BAD_PROGRAM = PROGRAM.replace("cost_points = 500", "cost_points = -5")


async def admin_of(shop, run) -> dict[str, str]:
    key = await run(new_api_key, shop.merchant_id, KeyRole.ADMIN, "ada")
    return {"authorization": f"Bearer {key}"}


async def test_the_admin_reads_validates_and_publishes_the_program(shop, run):
    admin = await admin_of(shop, run)
    shown = (await shop.query(PROGRAM_QUERY, admin))["data"]["adminProgram"]
    assert (shown["version"], shown["document"]["name"]) == (1, "Checkout")
    assert shown["document"]["rewards"][0]["cost_points"] == 500

    checked = (await shop.query(VALIDATE, admin, document=BAD_PROGRAM))["data"]
    [problem] = checked["validateProgram"]["problems"]
    assert checked["validateProgram"]["valid"] is False
    assert problem["field"] == "$.rewards[0].cost_points"
    rejected = (await shop.query(PUBLISH, admin, document=BAD_PROGRAM))["data"]["publishProgram"]
    assert (rejected["__typename"], rejected["code"]) == ("ProgramRejected", "program_invalid")
    assert (await shop.query(PROGRAM_QUERY, admin))["data"]["adminProgram"]["version"] == 1

    better = PROGRAM.replace('name = "Checkout"', 'name = "Checkout 2"')
    assert (await shop.query(VALIDATE, admin, document=better))["data"]["validateProgram"] == {
        "valid": True,
        "problems": [],
    }
    published = (await shop.query(PUBLISH, admin, document=better))["data"]["publishProgram"]
    assert published == {
        "__typename": "ProgramPublished",
        "version": 2,
        "effectiveFrom": NOW.isoformat(),
    }
    shown = (await shop.query(PROGRAM_QUERY, admin))["data"]["adminProgram"]
    assert (shown["version"], shown["document"]["name"]) == (2, "Checkout 2")
    assert [v["version"] for v in shown["versions"]] == [1, 2]


async def test_the_admin_makes_lists_and_revokes_keys(shop, run, engine):
    from pointguard import db

    admin = await admin_of(shop, run)
    made = (await shop.query(CREATE_KEY, admin, role="REVIEWER", name="bob"))["data"]
    created = made["createApiKey"]
    assert (created["__typename"], created["role"]) == ("CreatedApiKey", "REVIEWER")
    async with db.connection(engine) as pg:
        owner = await find_api_key(pg, created["key"])
    assert (owner.merchant_id, owner.role, owner.name) == (shop.merchant_id, "reviewer", "bob")
    twice = (await shop.query(CREATE_KEY, admin, role="ADMIN", name="bob"))["data"]
    assert twice["createApiKey"]["__typename"] == "InvalidInput"

    listed = (await shop.query("{ apiKeys { name role revokedAt } }", admin))["data"]["apiKeys"]
    assert {k["name"]: k["role"] for k in listed} == {
        "storefront": "STOREFRONT",
        "ada": "ADMIN",
        "bob": "REVIEWER",
    }
    assert (await shop.query(REVOKE_KEY, admin, name="bob"))["data"]["revokeApiKey"] == {
        "__typename": "RevokedApiKey"
    }
    async with db.connection(engine) as pg:
        assert await find_api_key(pg, created["key"]) is None
    again = (await shop.query(REVOKE_KEY, admin, name="bob"))["data"]["revokeApiKey"]
    assert again == {"__typename": "NotFound", "code": "not_found"}


async def test_a_rotated_secret_signs_tokens_and_the_old_one_still_does(shop, run):
    admin = await admin_of(shop, run)
    rotated = await shop.query(
        "mutation { rotateWebhookSecret { webhookSecret customerTokenSecret } }", admin
    )
    secrets = rotated["data"]["rotateWebhookSecret"]
    assert secrets["webhookSecret"].startswith("whsec_")
    token = mint_customer_token(secrets["customerTokenSecret"], shop.merchant_id, "ann", now=NOW)
    balance = "{ me { balance { available } } }"
    new = await shop.query(balance, {"authorization": f"Bearer {token}"})
    old = await shop.query(balance, shop.customer("ann"))
    assert new["data"] == old["data"] == {"me": {"balance": {"available": 1000}}}


async def test_analytics_for_a_period(shop, run):
    admin = await admin_of(shop, run)
    query = "query A($s: DateTime!, $e: DateTime!) { analytics(start: $s, end: $e) }"
    figures = await shop.query(query, admin, s="2026-11-01T00:00:00Z", e="2026-12-01T00:00:00Z")
    assert "errors" not in figures, figures
    assert isinstance(figures["data"]["analytics"], dict) and figures["data"]["analytics"]
    backwards = await shop.query(query, admin, s="2026-12-01T00:00:00Z", e="2026-11-01T00:00:00Z")
    assert backwards["errors"][0]["extensions"] == {"code": "query_refused"}


async def test_dead_letters_are_listed_and_replayed(shop, run):
    admin = await admin_of(shop, run)
    await run(
        lambda pg: pg.execute(
            "INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, status, attempts,"
            " last_error) VALUES ($1, 'msg_dead', 'order.paid', '{}', 'dead', 8, 'bad order')",
            shop.merchant_id,
        )
    )
    listed = await shop.query("{ deadLetters(kind: INBOX) { id eventType lastError } }", admin)
    assert listed["data"]["deadLetters"] == [
        {"id": "msg_dead", "eventType": "order.paid", "lastError": "bad order"}
    ]
    replayed = await shop.query(
        'mutation { replayDeadLetters(kind: INBOX, ids: ["msg_dead"]) { replayed } }', admin
    )
    assert replayed["data"]["replayDeadLetters"] == {"replayed": 1}
    status = await run(
        lambda pg: pg.fetchval(
            "SELECT status FROM inbox WHERE merchant_id = $1 AND webhook_id = 'msg_dead'",
            shop.merchant_id,
        )
    )
    assert status == "pending"
    outbox = await shop.query("{ deadLetters(kind: OUTBOX) { id } }", admin)
    assert outbox["data"]["deadLetters"] == []


async def test_the_operator_creates_a_merchant_and_nothing_else(shop, run, engine):
    from pointguard import db

    operator = {"authorization": f"Bearer {OPERATOR_KEY}"}
    made = await shop.query(
        'mutation { createMerchant(name: "New Shop") { __typename'
        " ... on CreatedMerchant { merchantId apiKey webhookSecret customerTokenSecret } } }",
        operator,
    )
    created = made["data"]["createMerchant"]
    assert created["merchantId"].startswith("new-shop-")
    assert created["customerTokenSecret"].startswith("customer_")
    async with db.connection(engine) as pg:
        owner = await find_api_key(pg, created["apiKey"])
    assert (owner.merchant_id, owner.role) == (created["merchantId"], "storefront")
    nosy = await shop.query(PROGRAM_QUERY, operator)
    assert nosy["errors"][0]["extensions"] == {"code": "forbidden"}
    admin = await admin_of(shop, run)
    not_operator = await shop.query('mutation { createMerchant(name: "X") { __typename } }', admin)
    assert not_operator["errors"][0]["extensions"] == {"code": "forbidden"}
