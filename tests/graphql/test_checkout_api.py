"""The storefront's checkout through `/graphql`: quote, reserve, capture or void, replays that
reserve once, and expected failures as typed results that change nothing."""

from __future__ import annotations

from pointguard.ledger import member_balances
from tests.graphql.conftest import CART

QUOTE = """
query Quote($member: ID!, $cart: CartInput!) {
  quoteRedemption(memberId: $member, cart: $cart) {
    rewardId points discountMinor redeemable refusals { code message }
  }
}
"""

RESERVE = """
mutation Reserve($member: ID!, $reward: ID!, $cart: CartInput!, $key: String!) {
  reserveRedemption(memberId: $member, rewardId: $reward, cart: $cart, idempotencyKey: $key) {
    __typename
    ... on Redemption { id code points discountMinor status expiresAt }
    ... on Problem { code message }
    ... on InsufficientPoints { availablePoints }
  }
}
"""

CAPTURE = """
mutation Capture($id: ID!) {
  captureRedemption(redemptionId: $id) {
    __typename
    ... on Redemption { id status }
    ... on Problem { code message }
  }
}
"""

VOID = """
mutation Void($id: ID!) {
  voidRedemption(redemptionId: $id) {
    __typename
    ... on Redemption { id status }
    ... on Problem { code message }
  }
}
"""


async def points(run, shop, member="ann"):
    found = await run(member_balances, shop.merchant_id, member)
    return found.available_points, found.reserved_points


async def test_quote_reserve_capture_spends_the_points_once(shop, run):
    quoted = await shop.query(QUOTE, shop.storefront, member="ann", cart=CART)
    options = {o["rewardId"]: o for o in quoted["data"]["quoteRedemption"]}
    assert (options["five-off"]["points"], options["five-off"]["redeemable"]) == (500, True)
    assert [r["code"] for r in options["gold-pct"]["refusals"]] == ["tier_gated"]

    variables = {"member": "ann", "reward": "five-off", "cart": CART, "key": "checkout-1"}
    reserved = (await shop.query(RESERVE, shop.storefront, **variables))["data"]
    redemption = reserved["reserveRedemption"]
    assert (redemption["__typename"], redemption["status"]) == ("Redemption", "open")
    assert (redemption["points"], redemption["discountMinor"]) == (500, 500)
    assert redemption["expiresAt"] == "2026-11-20T12:15:00+00:00"
    again = (await shop.query(RESERVE, shop.storefront, **variables))["data"]
    assert again["reserveRedemption"] == redemption  # the retry reserved nothing more
    assert await points(run, shop) == (500, 500)

    captured = await shop.query(CAPTURE, shop.storefront, id=redemption["id"])
    assert captured["data"]["captureRedemption"]["status"] == "captured"
    assert await points(run, shop) == (500, 0)
    voided = await shop.query(VOID, shop.storefront, id=redemption["id"])
    assert voided["data"]["voidRedemption"]["__typename"] == "RedemptionCompleted"
    assert await points(run, shop) == (500, 0)


async def test_quote_reserve_void_gives_the_points_back(shop, run):
    variables = {"member": "ann", "reward": "five-off", "cart": CART, "key": "checkout-2"}
    redemption = (await shop.query(RESERVE, shop.storefront, **variables))["data"]
    redemption_id = redemption["reserveRedemption"]["id"]
    voided = await shop.query(VOID, shop.storefront, id=redemption_id)
    assert voided["data"]["voidRedemption"] == {
        "__typename": "Redemption",
        "id": redemption_id,
        "status": "voided",
    }
    assert await points(run, shop) == (1000, 0)


async def test_expected_failures_are_typed_results_and_change_nothing(shop, run):
    def reserve(reward, key, member="ann"):
        variables = {"member": member, "reward": reward, "cart": CART, "key": key}
        return shop.query(RESERVE, shop.storefront, **variables)

    for key in ("a", "b"):
        assert (await reserve("five-off", key))["data"]["reserveRedemption"]["__typename"] == (
            "Redemption"
        )
    short = (await reserve("five-off", "c"))["data"]["reserveRedemption"]
    assert (short["__typename"], short["code"], short["availablePoints"]) == (
        "InsufficientPoints",
        "insufficient_points",
        0,
    )
    gated = (await reserve("gold-pct", "d"))["data"]["reserveRedemption"]
    assert (gated["__typename"], gated["code"]) == ("TierRequired", "tier_required")
    unknown = (await reserve("no-such-reward", "e"))["data"]["reserveRedemption"]
    assert (unknown["__typename"], unknown["code"]) == ("RewardUnavailable", "reward_unavailable")
    nobody = (await reserve("five-off", "f", member="nobody"))["data"]["reserveRedemption"]
    assert (nobody["__typename"], nobody["message"]) == ("NotFound", "no member 'nobody'")
    missing = (await shop.query(CAPTURE, shop.storefront, id="999999999"))["data"]
    assert missing["captureRedemption"]["__typename"] == "NotFound"
    assert await points(run, shop) == (0, 1000)
    assert await points(run, shop, "nobody") == (0, 0)
