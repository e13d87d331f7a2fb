"""Every operation of the schema, tried with every role and with another merchant's
credential. The cases are listed per operation, and the first test fails when the schema has
an operation without one: a new operation cannot ship without its isolation and role cases.

- Roles: each operation called with a credential of every role it does not allow answers
  `forbidden`, and changes nothing.
- Tenants: each operation called by merchant B's credential (of a role it allows) with
  merchant A's ids answers as for a missing id, and changes nothing at A."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pointguard.graphql.auth import Role
from pointguard.graphql.customer_tokens import TOKEN_SECRET_SENDER, mint_customer_token
from pointguard.graphql.schema import build_schema
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.plugin.api_keys import KeyRole, new_api_key
from pointguard.plugin.merchants import NewMerchant, sender_secret
from tests.graphql.conftest import CART, NOW, Shop, new_shop
from tests.graphql.test_checkout_api import CAPTURE, QUOTE, RESERVE, VOID

ME = "{ me { balance { available } } }"


@dataclass(frozen=True)
class Operation:
    roles: frozenset[Role]  # who may call it
    text: str
    variables: Callable[[dict[str, Any]], dict[str, Any]]  # from A's ids
    field: str

    def refused_for_another_merchant(self, answer: dict[str, Any]) -> bool:
        """Whether B's call on A's ids answered as for a missing id."""
        errors = answer.get("errors") or []
        if any(e["extensions"]["code"] == "not_found" for e in errors):
            return True
        result = (answer.get("data") or {}).get(self.field)
        return isinstance(result, dict) and result.get("__typename") == "NotFound"


STOREFRONT = frozenset({Role.STOREFRONT})
OPERATIONS = {
    "me": Operation(frozenset({Role.CUSTOMER}), ME, lambda ids: {}, "me"),
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
}


def test_every_operation_of_the_schema_has_its_cases():
    schema = build_schema(production=False)._schema
    fields = {name for root in (schema.query_type, schema.mutation_type) for name in root.fields}
    assert fields == set(OPERATIONS), "add the new operation's cases to OPERATIONS"


async def credentials(run, merchant: NewMerchant, member: str) -> dict[Role, dict[str, str]]:
    """A credential of every role at `merchant`; the customer's is `member`'s."""
    made = {Role.STOREFRONT: merchant.api_key}
    for role in (KeyRole.REVIEWER, KeyRole.ADMIN):
        made[Role(role.value)] = await run(new_api_key, merchant.merchant_id, role, f"{role}-1")
    secret = sender_secret(merchant.webhook_secret, TOKEN_SECRET_SENDER)
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
    other = await new_shop(run, "Other Shop")
    ids = {"member": "zoe", "redemption": reserved["data"]["reserveRedemption"]["id"]}
    return (
        shop,
        ids,
        await credentials(run, shop.merchant, "zoe"),
        await credentials(run, other, "zoe"),
    )


async def state(run, shop: Shop) -> tuple[Any, ...]:
    found = [await run(member_balances, shop.merchant_id, m) for m in ("ann", "zoe")]
    return tuple((b.available_points, b.pending_points, b.reserved_points) for b in found)


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
        if role is Role.CUSTOMER:  # B's customer token names B's zoe: none of A's data
            assert answer["data"]["me"]["balance"]["available"] == 0, answer
        else:
            assert operation.refused_for_another_merchant(answer), (name, role, answer)
    assert await state(run, shop) == before
