"""Every operation of the schema, tried with every role and with another merchant's
credential. The cases are listed per operation, and the first test fails when the schema has
an operation without one: a new operation cannot ship without its isolation and role cases.

- Roles: each operation called with a credential of every role it does not allow answers
  `forbidden`, and changes nothing.
- Tenants: each operation called by merchant B's credential (of a role it allows) with
  merchant A's ids answers as for a missing id, and changes nothing at A."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pointguard.graphql.auth import Role
from pointguard.graphql.customer_tokens import customer_token_secret, mint_customer_token
from pointguard.graphql.schema import build_schema
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.plugin.api_keys import KeyRole, new_api_key
from pointguard.plugin.merchants import NewMerchant
from tests.graphql.conftest import CART, NOW, OPERATOR_KEY, PROGRAM, Shop, new_shop
from tests.graphql.test_admin_api import CREATE_KEY, PUBLISH, REVOKE_KEY, VALIDATE
from tests.graphql.test_checkout_api import CAPTURE, QUOTE, RESERVE, VOID
from tests.graphql.test_customer_extras import CREATE_LINK, LEADERBOARD, OPT_IN, REDEEM, REWARDS
from tests.graphql.test_customer_extras import PROGRAM as PROGRAM_IN_WORDS
from tests.graphql.test_dashboard_api import POINTS_OVER_TIME
from tests.graphql.test_reviewer_api import CASE, CLEAR, CONFIRM, ESCALATE, QUEUE, RANGES

ME = "{ me { balance { available } } }"


@dataclass(frozen=True)
class Operation:
    roles: frozenset[Role]  # who may call it
    text: str
    variables: Callable[[dict[str, Any]], dict[str, Any]]  # from A's ids
    field: str
    takes_ids: bool = True  # False: it names nothing; it answers about the caller's merchant

    def isolated(self, answer: dict[str, Any], merchant_a: str) -> bool:
        """Whether B's call on A's ids answered as for a missing id (or, for an operation
        that names nothing, answered without a trace of A)."""
        if not self.takes_ids:
            return merchant_a not in json.dumps(answer)
        errors = answer.get("errors") or []
        if any(e["extensions"]["code"] == "not_found" for e in errors):
            return True
        result = (answer.get("data") or {}).get(self.field)
        return isinstance(result, dict) and result.get("__typename") == "NotFound"


STOREFRONT = frozenset({Role.STOREFRONT})
ADMIN = frozenset({Role.ADMIN})
REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
CUSTOMER = frozenset({Role.CUSTOMER})
OPERATOR = frozenset({Role.OPERATOR})
NOTHING: Callable[[dict[str, Any]], dict[str, Any]] = lambda ids: {}  # noqa: E731


def admin(text: str, field: str, variables=NOTHING) -> Operation:  # type: ignore[no-untyped-def]
    return Operation(ADMIN, text, variables, field, takes_ids=False)


OPERATIONS = {
    "me": Operation(CUSTOMER, ME, NOTHING, "me", takes_ids=False),
    "quoteRedemption": Operation(
        STOREFRONT, QUOTE, lambda ids: {"member": ids["member"], "cart": CART}, "quoteRedemption"
    ),
    "reserveRedemption": Operation(
        STOREFRONT,
        RESERVE,
        lambda ids: {"member": ids["member"], "reward": "five-off", "cart": CART, "key": "x"},
        "reserveRedemption",
    ),
    "captureRedemption": Operation(
        STOREFRONT, CAPTURE, lambda ids: {"id": ids["redemption"]}, "captureRedemption"
    ),
    "voidRedemption": Operation(
        STOREFRONT, VOID, lambda ids: {"id": ids["redemption"]}, "voidRedemption"
    ),
    "adminProgram": admin("{ adminProgram { version } }", "adminProgram"),
    "analytics": admin(
        '{ analytics(start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z") }', "analytics"
    ),
    "apiKeys": admin("{ apiKeys { name } }", "apiKeys"),
    "deadLetters": admin("{ deadLetters(kind: INBOX) { id } }", "deadLetters"),
    "validateProgram": admin(VALIDATE, "validateProgram", lambda ids: {"document": PROGRAM}),
    "publishProgram": admin(PUBLISH, "publishProgram", lambda ids: {"document": PROGRAM}),
    "createApiKey": admin(
        CREATE_KEY, "createApiKey", lambda ids: {"role": "ADMIN", "name": "mallory"}
    ),
    "revokeApiKey": admin(REVOKE_KEY, "revokeApiKey", lambda ids: {"name": "storefront"}),
    "rotateWebhookSecret": admin(
        "mutation { rotateWebhookSecret { webhookSecret } }", "rotateWebhookSecret"
    ),
    "replayDeadLetters": admin(
        "mutation { replayDeadLetters(kind: INBOX) { replayed } }", "replayDeadLetters"
    ),
    "reviewCases": Operation(
        REVIEWERS, QUEUE, lambda ids: {"first": 50}, "reviewCases", takes_ids=False
    ),
    "pointsOverTime": Operation(
        REVIEWERS,
        POINTS_OVER_TIME,
        lambda ids: {"start": "2026-11-01T00:00:00Z", "end": "2026-11-21T00:00:00Z"},
        "pointsOverTime",
        takes_ids=False,
    ),
    "reviewCase": Operation(REVIEWERS, CASE, lambda ids: {"id": ids["case"]}, "reviewCase"),
    "reviewFeatureRanges": Operation(
        REVIEWERS, RANGES, lambda ids: {}, "reviewFeatureRanges", takes_ids=False
    ),
    "clearCase": Operation(REVIEWERS, CLEAR, lambda ids: {"id": ids["case"]}, "clearCase"),
    "confirmCase": Operation(
        REVIEWERS,
        CONFIRM,
        lambda ids: {"id": ids["case"], "freeze": True, "void": True},
        "confirmCase",
    ),
    "escalateCase": Operation(REVIEWERS, ESCALATE, lambda ids: {"id": ids["case"]}, "escalateCase"),
    "rewards": Operation(CUSTOMER, REWARDS, NOTHING, "rewards", takes_ids=False),
    "leaderboard": Operation(
        CUSTOMER, LEADERBOARD, lambda ids: {"period": "2026-11"}, "leaderboard", takes_ids=False
    ),
    "program": Operation(CUSTOMER, PROGRAM_IN_WORDS, NOTHING, "program", takes_ids=False),
    "createReferralLink": Operation(
        CUSTOMER, CREATE_LINK, NOTHING, "createReferralLink", takes_ids=False
    ),
    "optIntoLeaderboard": Operation(
        CUSTOMER, OPT_IN, lambda ids: {"optIn": True}, "optIntoLeaderboard", takes_ids=False
    ),
    "redeemReward": Operation(
        CUSTOMER,
        REDEEM,
        lambda ids: {"reward": "five-off", "key": "r-1"},
        "redeemReward",
        takes_ids=False,
    ),
    "createMerchant": Operation(
        OPERATOR,
        'mutation { createMerchant(name: "Mallory") { __typename } }',
        NOTHING,
        "createMerchant",
        takes_ids=False,
    ),
}


def test_every_operation_of_the_schema_has_its_cases():
    schema = build_schema(production=False)._schema
    fields = {name for root in (schema.query_type, schema.mutation_type) for name in root.fields}
    assert fields == set(OPERATIONS), "add the new operation's cases to OPERATIONS"


async def credentials(run, merchant: NewMerchant, member: str) -> dict[Role, dict[str, str]]:
    """A credential of every role at `merchant`; the customer's is `member`'s."""
    made = {Role.STOREFRONT: merchant.api_key, Role.OPERATOR: OPERATOR_KEY}
    for role in (KeyRole.REVIEWER, KeyRole.ADMIN):
        made[Role(role.value)] = await run(new_api_key, merchant.merchant_id, role, f"{role}-1")
    secret = customer_token_secret(merchant.webhook_secret)
    made[Role.CUSTOMER] = mint_customer_token(secret, merchant.merchant_id, member, now=NOW)
    return {role: {"authorization": f"Bearer {value}"} for role, value in made.items()}


@pytest.fixture
async def two_shops(shop, run):
    """Shop A (with member zoe, who exists only there, and an open redemption of ann's) and
    shop B; each with a credential of every role."""
    await run(ops.earn, shop.merchant_id, "zoe", 900, key="z", description="gift", source="test")
    reserved = await shop.query(
        RESERVE, shop.storefront, member="ann", reward="five-off", cart=CART, key="a-1"
    )
    case_id = await run(
        lambda pg: pg.fetchval(
            "INSERT INTO fraud_cases (merchant_id, member_id, opened_at) VALUES ($1, 'zoe', $2)"
            " RETURNING case_id",
            shop.merchant_id,
            NOW,
        )
    )
    other = await new_shop(run, "Other Shop")
    ids = {
        "member": "zoe",
        "redemption": reserved["data"]["reserveRedemption"]["id"],
        "case": str(case_id),
    }
    return (
        shop,
        ids,
        await credentials(run, shop.merchant, "zoe"),
        await credentials(run, other, "zoe"),
    )


async def state(run, shop: Shop) -> tuple[Any, ...]:
    """A's balances, program versions, live keys and inbox, as they stand."""
    found = [await run(member_balances, shop.merchant_id, m) for m in ("ann", "zoe")]
    rows = await run(
        lambda pg: pg.fetchrow(
            "SELECT (SELECT count(*) FROM program_versions WHERE merchant_id = $1) AS versions,"
            " (SELECT array_agg(name ORDER BY name) FROM merchant_api_keys"
            "  WHERE merchant_id = $1 AND revoked_at IS NULL) AS keys,"
            " (SELECT count(*) FROM merchant_credentials WHERE merchant_id = $1) AS secrets,"
            " (SELECT count(*) FROM inbox WHERE merchant_id = $1) AS inbox,"
            " (SELECT array_agg(status) FROM fraud_cases WHERE merchant_id = $1) AS cases",
            shop.merchant_id,
        )
    )
    balances = tuple((b.available_points, b.pending_points, b.reserved_points) for b in found)
    return (*balances, tuple(rows))


@pytest.mark.parametrize("name", sorted(OPERATIONS))
async def test_an_operation_refuses_every_role_it_does_not_allow(two_shops, run, name):
    shop, ids, mine, _ = two_shops
    operation = OPERATIONS[name]
    before = await state(run, shop)
    for role in set(Role) - operation.roles:
        answer = await shop.query(operation.text, mine[role], **operation.variables(ids))
        codes = [e["extensions"]["code"] for e in answer.get("errors", [])]
        assert codes == ["forbidden"], (name, role, answer)
    assert await state(run, shop) == before


@pytest.mark.parametrize("name", sorted(OPERATIONS))
async def test_another_merchants_credential_finds_nothing_of_this_merchant(two_shops, run, name):
    shop, ids, _, theirs = two_shops
    operation = OPERATIONS[name]
    before = await state(run, shop)
    for role in operation.roles:
        answer = await shop.query(operation.text, theirs[role], **operation.variables(ids))
        if name == "me":  # B's customer token names B's zoe: none of A's zoe's points
            assert answer["data"]["me"]["balance"]["available"] == 0, answer
        assert operation.isolated(answer, shop.merchant_id), (name, role, answer)
    assert await state(run, shop) == before
