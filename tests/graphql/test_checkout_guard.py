"""The fraud guard at the checkout: a member who shares a card or a device with a member under
review, frozen or confirmed abusive cannot spend; the reservation is refused
(`MemberUnderReview`) and the member's case opened, with the refusal and its reason for the
reviewer. Sharing only a network and an address (a household) refuses nothing."""

from __future__ import annotations

from pointguard.fraud.identity import LinkKind
from pointguard.fraud.links import SeenLink, record_links
from pointguard.ledger import member_balances
from pointguard.plugin.api_keys import KeyRole, new_api_key
from tests.graphql.conftest import CART, NOW
from tests.graphql.test_checkout_api import RESERVE
from tests.graphql.test_reviewer_api import CASE


async def link(run, shop, kind: LinkKind, digest: bytes, *members: str) -> None:
    seen = [SeenLink(kind, digest, member, NOW) for member in members]
    await run(record_links, shop.merchant_id, seen)


async def flag(run, shop, member: str) -> None:
    await run(
        lambda pg: pg.execute(
            "INSERT INTO fraud_cases (merchant_id, member_id, opened_at) VALUES ($1, $2, $3)",
            shop.merchant_id,
            member,
            NOW,
        )
    )


def reserve(shop, key: str):
    variables = {"member": "ann", "reward": "five-off", "cart": CART, "key": key}
    return shop.query(RESERVE, shop.storefront, **variables)


async def test_a_member_sharing_a_card_with_one_under_review_is_refused_and_reviewed(shop, run):
    await link(run, shop, LinkKind.CARD, b"card-1", "ann", "cleo")
    await flag(run, shop, "cleo")

    refused = (await reserve(shop, "cart-1"))["data"]["reserveRedemption"]
    assert (refused["__typename"], refused["code"]) == ("MemberUnderReview", "member_under_review")
    again = (await reserve(shop, "cart-1"))["data"]["reserveRedemption"]
    assert again["__typename"] == "MemberUnderReview"
    balances = await run(member_balances, shop.merchant_id, "ann")
    assert (balances.available_points, balances.reserved_points) == (1000, 0)

    key = await run(new_api_key, shop.merchant_id, KeyRole.REVIEWER, "alice")
    queue = await shop.query(
        "{ reviewCases(first: 10) { cases { id member { id } } } }",
        {"authorization": f"Bearer {key}"},
    )
    cases = {c["member"]["id"]: c["id"] for c in queue["data"]["reviewCases"]["cases"]}
    assert set(cases) == {"ann", "cleo"}
    shown = await shop.query(
        CASE.replace("reasons\n", "reasons refusedCheckouts { idempotencyKey rewardId reasons }\n"),
        {"authorization": f"Bearer {key}"},
        id=cases["ann"],
    )
    case = shown["data"]["reviewCase"]
    reason = "shares a card with member cleo, under review"
    assert case["refusedCheckouts"] == [
        {"idempotencyKey": "cart-1", "rewardId": "five-off", "reasons": [reason]}
    ]
    assert case["reasons"] == [reason]
    flagged = await run(
        lambda pg: pg.fetch(
            "SELECT event_type, payload->>'member_id' AS member FROM outbox"
            " WHERE merchant_id = $1 AND event_type = 'member.flagged'",
            shop.merchant_id,
        )
    )
    assert [(r["event_type"], r["member"]) for r in flagged] == [("member.flagged", "ann")]


async def test_sharing_only_a_network_and_an_address_refuses_nothing(shop, run):
    await link(run, shop, LinkKind.IP_PREFIX, b"net-1", "ann", "cleo")
    await link(run, shop, LinkKind.ADDRESS, b"home-1", "ann", "cleo")
    await flag(run, shop, "cleo")
    made = (await reserve(shop, "cart-2"))["data"]["reserveRedemption"]
    assert made["__typename"] == "Redemption"


async def test_a_program_may_turn_the_checkout_screen_off(shop, run):
    from pointguard.program.document.validate import parse_program
    from pointguard.program.document.versions import save_program
    from tests.graphql.conftest import PROGRAM

    relaxed = PROGRAM + "\n[guard]\nhold_redemptions_linked_to_flagged = false\n"
    await run(save_program, shop.merchant_id, parse_program(relaxed), effective_from=NOW)
    await link(run, shop, LinkKind.CARD, b"card-2", "ann", "cleo")
    await flag(run, shop, "cleo")
    made = (await reserve(shop, "cart-3"))["data"]["reserveRedemption"]
    assert made["__typename"] == "Redemption"
