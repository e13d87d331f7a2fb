"""The rest of the customer's view through `/graphql` with a customer token, end to end
against PostgreSQL: `me`'s referral, challenges and badges; the `rewards` catalogue, the
monthly `leaderboard` and the `program` in words; the mutations `createReferralLink`,
`optIntoLeaderboard` and `redeemReward`. Each change reads back; each refusal changes nothing;
a storefront key is forbidden all of it; a customer of one merchant never sees another's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from graphql import parse, validate

from pointguard.fraud.cases import open_cases
from pointguard.graphql.schema import build_schema
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed, OrderLine, OrderPaid
from tests.graphql.conftest import NOW, Shop, new_shop
from tests.graphql.test_checkout_api import CAPTURE

EXTRAS = """
name = "Checkout"
currency = "EUR"
return_window_days = 14
leaderboard = { enabled = true }

[earning]
points_per_major_unit = "2"

[[actions]]
event = "review.published"
points = 10
description = "Thanks for your review"

[referrals]
referee_points = 200
referrer_points = 500
link_pattern = "https://shop.example/invite/{code}"

[[promotions]]
id = "bf"
name = "Black Friday"
starts_at = 2026-11-20T00:00:00Z
ends_at = 2026-11-30T00:00:00Z
multiplier = "2"

[[tiers.levels]]
name = "Silver"
threshold = 0
[[tiers.levels]]
name = "Gold"
threshold = 50000
multiplier = "1.5"

[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 500
amount_minor = 500
[[rewards]]
type = "percent_off"
id = "gold-pct"
name = "Gold 20% off"
cost_points = 100
percent = 20
max_discount_minor = 1500
tiers = ["Gold"]
[[rewards]]
type = "free_product"
id = "tote"
name = "Tote bag"
cost_points = 400
sku = "TOTE"
stock = 1
[[rewards]]
type = "free_product"
id = "socks"
name = "Socks"
cost_points = 2000
sku = "SOCK"

[[challenges]]
id = "critic"
name = "Two reviews"
goal = "reviews"
target = 2
window_days = 30
bonus_points = 50
badge = "Critic"
[[challenges]]
id = "star"
name = "Five reviews"
goal = "reviews"
target = 5
window_days = 30
bonus_points = 0
badge = "Star"
[[challenges]]
id = "three-orders"
name = "Three orders"
goal = "orders"
target = 3
window_days = 30
bonus_points = 300
badge = "Regular"
"""
SINCE = datetime(2021, 1, 1, tzinfo=UTC)  # after the shop's first version (2020)
DAY = timedelta(days=1)

ME = """
{
  me {
    referral { code link successfulReferrals }
    challenges { id name goal target progress completed endsAt bonusPoints badge }
    badges { name challengeId earnedAt }
  }
}
"""
REWARDS = """
{ rewards { id name type costPoints gives affordable pointsShort tierGated
            redeemableFromAccount refusals { code } } }
"""
LEADERBOARD = """
query Board($period: String!, $first: Int! = 10) {
  leaderboard(period: $period, first: $first) {
    period rows { rank alias points } me { alias rank points }
  }
}
"""
PROGRAM = "{ program { name currency sections { title lines } } }"
CREATE_LINK = """
mutation {
  createReferralLink {
    __typename
    ... on Referral { code link successfulReferrals }
    ... on Problem { code message }
  }
}
"""
OPT_IN = """
mutation OptIn($optIn: Boolean!) {
  optIntoLeaderboard(optIn: $optIn) {
    __typename
    ... on LeaderboardMembership { optedIn alias }
    ... on Problem { code message }
  }
}
"""
REDEEM = """
mutation Redeem($reward: ID!, $key: String!) {
  redeemReward(rewardId: $reward, idempotencyKey: $key) {
    __typename
    ... on Redemption { id memberId code points freeSku description expiresAt status }
    ... on Problem { code message }
    ... on RewardUnavailable { reason }
    ... on InsufficientPoints { availablePoints }
  }
}
"""


@pytest.fixture
async def extras(shop, run):
    """The shop with EXTRAS in force: referrals, challenges, a leaderboard, free products."""
    await run(save_program, shop.merchant_id, parse_program(EXTRAS), effective_from=SINCE)
    return shop


def data(answer):
    assert "errors" not in answer, answer
    return answer["data"]


async def points(run, merchant_id, member="ann"):
    found = await run(member_balances, merchant_id, member)
    return found.available_points, found.pending_points, found.reserved_points


async def member_row(run, merchant_id, member="ann"):
    """The member's referral code and leaderboard alias as stored (None: no row)."""
    row = await run(
        lambda pg: pg.fetchrow(
            "SELECT referral_code, leaderboard_alias FROM program_members"
            " WHERE merchant_id = $1 AND member_id = $2",
            merchant_id,
            member,
        )
    )
    return None if row is None else (row["referral_code"], row["leaderboard_alias"])


async def redemptions(run, merchant_id):
    return await run(
        lambda pg: pg.fetchval(
            "SELECT count(*) FROM program_redemptions WHERE merchant_id = $1", merchant_id
        )
    )


async def this_month(run) -> str:
    """The month of the database's clock: ledger entries are stamped with it."""
    at = await run(lambda pg: pg.fetchval("SELECT now()"))
    return str(at.astimezone(UTC).strftime("%Y-%m"))


def review(n, at):
    return ActionPerformed(
        event_id=f"review-{n}", member_id="ann", occurred_at=at, action="review.published"
    )


def first_order(member, code, at):
    return OrderPaid(
        event_id=f"order-{member}",
        member_id=member,
        occurred_at=at,
        order_id=f"{member}-1",
        currency="EUR",
        referral_code=code,
        lines=[OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=5000)],
    )


# --- me: referral, challenges, badges ---------------------------------------------------------


async def test_me_before_anything_happened(extras):
    me = data(await extras.query(ME, extras.customer("ann")))["me"]
    assert me["referral"] is None  # no code until createReferralLink
    assert [(c["id"], c["progress"], c["completed"], c["endsAt"]) for c in me["challenges"]] == [
        ("critic", 0, False, None),
        ("star", 0, False, None),
        ("three-orders", 0, False, None),
    ]
    assert me["challenges"][0] == {
        "id": "critic",
        "name": "Two reviews",
        "goal": "reviews",
        "target": 2,
        "progress": 0,
        "completed": False,
        "endsAt": None,
        "bonusPoints": 50,
        "badge": "Critic",
    }
    assert me["badges"] == []


async def test_me_shows_referrals_challenges_and_badges_as_they_happen(extras, run):
    created = data(await extras.query(CREATE_LINK, extras.customer("ann")))["createReferralLink"]
    code = created["code"]
    await run(apply_event, extras.merchant_id, first_order("bob", code, NOW - 3 * DAY))
    await run(apply_event, extras.merchant_id, review(1, NOW - 2 * DAY))
    await run(apply_event, extras.merchant_id, review(2, NOW - DAY))

    me = data(await extras.query(ME, extras.customer("ann")))["me"]
    assert me["referral"] == {
        "code": code,
        "link": f"https://shop.example/invite/{code}",
        "successfulReferrals": 1,
    }
    challenges = {c["id"]: c for c in me["challenges"]}
    assert (challenges["critic"]["progress"], challenges["critic"]["completed"]) == (2, True)
    assert challenges["critic"]["endsAt"] is None  # completed: nothing left to lapse
    # Two of five reviews: the first leaves the 30-day window 30 days after it was written.
    star = challenges["star"]
    assert (star["progress"], star["completed"]) == (2, False)
    assert star["endsAt"] == (NOW - 2 * DAY + 30 * DAY).isoformat()
    assert me["badges"] == [
        {"name": "Critic", "challengeId": "critic", "earnedAt": (NOW - DAY).isoformat()}
    ]
    assert (await points(run, extras.merchant_id))[0] == 1000 + 10 + 10 + 50


# --- createReferralLink -------------------------------------------------------------------------


async def test_create_referral_link_makes_one_code_and_gives_it_again(extras, run):
    first = data(await extras.query(CREATE_LINK, extras.customer("ann")))["createReferralLink"]
    assert first["__typename"] == "Referral"
    assert first["link"] == f"https://shop.example/invite/{first['code']}"
    assert len(first["code"]) >= 11  # 64 random bits
    again = data(await extras.query(CREATE_LINK, extras.customer("ann")))["createReferralLink"]
    assert again == first
    assert (await member_row(run, extras.merchant_id))[0] == first["code"]
    me = data(await extras.query(ME, extras.customer("ann")))["me"]
    assert me["referral"]["code"] == first["code"]
    other = data(await extras.query(CREATE_LINK, extras.customer("bob")))["createReferralLink"]
    assert other["code"] != first["code"]


async def test_a_program_without_referrals_gives_no_code(shop, run):
    """The shop's own program (no [referrals]): a typed refusal, and no code stored."""
    refused = data(await shop.query(CREATE_LINK, shop.customer("ann")))["createReferralLink"]
    assert refused == {
        "__typename": "ReferralsDisabled",
        "code": "referrals_disabled",
        "message": f"merchant {shop.merchant_id!r} has no referral program",
    }
    assert await member_row(run, shop.merchant_id) is None
    assert data(await shop.query(ME, shop.customer("ann")))["me"]["referral"] is None


# --- rewards --------------------------------------------------------------------------------------


async def test_rewards_is_the_catalogue_as_it_stands_for_the_member(extras):
    found = data(await extras.query(REWARDS, extras.customer("ann")))["rewards"]
    assert found == [
        {
            "id": "five-off",
            "name": "5 EUR off",
            "type": "fixed_discount",
            "costPoints": 500,
            "gives": "5 EUR off your order",
            "affordable": True,
            "pointsShort": 0,
            "tierGated": False,
            "redeemableFromAccount": False,
            "refusals": [],
        },
        {
            "id": "gold-pct",
            "name": "Gold 20% off",
            "type": "percent_off",
            "costPoints": 100,
            "gives": "20% off your order, at most 15 EUR",
            "affordable": True,
            "pointsShort": 0,
            "tierGated": True,
            "redeemableFromAccount": False,
            "refusals": [{"code": "tier_gated"}],
        },
        {
            "id": "tote",
            "name": "Tote bag",
            "type": "free_product",
            "costPoints": 400,
            "gives": "the product, added to your order for free",
            "affordable": True,
            "pointsShort": 0,
            "tierGated": False,
            "redeemableFromAccount": True,
            "refusals": [],
        },
        {
            "id": "socks",
            "name": "Socks",
            "type": "free_product",
            "costPoints": 2000,
            "gives": "the product, added to your order for free",
            "affordable": False,
            "pointsShort": 1000,
            "tierGated": False,
            "redeemableFromAccount": True,
            "refusals": [],
        },
    ]


# --- redeemReward ---------------------------------------------------------------------------------


async def test_redeem_reward_reserves_once_and_the_storefront_captures_it(extras, run):
    merchant = extras.merchant_id
    variables = {"reward": "tote", "key": "account-tote-1"}
    made = data(await extras.query(REDEEM, extras.customer("ann"), **variables))["redeemReward"]
    assert made["__typename"] == "Redemption"
    assert (made["memberId"], made["points"], made["freeSku"], made["status"]) == (
        "ann",
        400,
        "TOTE",
        "open",
    )
    assert made["expiresAt"] == (NOW + 7 * DAY).isoformat()
    assert made["description"] == "400 points for Tote bag"
    assert await points(run, merchant) == (600, 300, 400)

    again = data(await extras.query(REDEEM, extras.customer("ann"), **variables))["redeemReward"]
    assert again == made
    assert await points(run, merchant) == (600, 300, 400)
    assert await redemptions(run, merchant) == 1

    stock = data(await extras.query(REWARDS, extras.customer("ann")))["rewards"][2]
    assert stock["refusals"] == [{"code": "out_of_stock"}]

    captured = data(await extras.query(CAPTURE, extras.storefront, id=made["id"]))
    assert captured["captureRedemption"] == {
        "__typename": "Redemption",
        "id": made["id"],
        "status": "captured",
    }
    assert await points(run, merchant) == (600, 300, 0)


@pytest.mark.parametrize(
    ("reward", "typename", "code", "detail"),
    [
        pytest.param(
            "five-off", "RewardUnavailable", "reward_unavailable", "needs_checkout", id="discount"
        ),
        pytest.param(
            "gold-pct", "RewardUnavailable", "reward_unavailable", "needs_checkout", id="percent"
        ),
        pytest.param(
            "no-such", "RewardUnavailable", "reward_unavailable", "unknown_reward", id="unknown"
        ),
        pytest.param("socks", "InsufficientPoints", "insufficient_points", 1000, id="too-dear"),
    ],
)
async def test_redeem_reward_refusals_change_nothing(extras, run, reward, typename, code, detail):
    variables = {"reward": reward, "key": f"account-{reward}"}
    refused = data(await extras.query(REDEEM, extras.customer("ann"), **variables))
    result = refused["redeemReward"]
    assert (result["__typename"], result["code"]) == (typename, code)
    assert result.get("reason", result.get("availablePoints")) == detail
    if detail == "needs_checkout":
        assert result["message"].endswith("takes money off an order: redeem it at checkout")
    assert await points(run, extras.merchant_id) == (1000, 300, 0)
    assert await redemptions(run, extras.merchant_id) == 0


async def test_a_member_under_review_cannot_redeem(extras, run):
    await run(open_cases, extras.merchant_id, [("ann", NOW - DAY)])
    refused = data(await extras.query(REDEEM, extras.customer("ann"), reward="tote", key="k"))
    assert (refused["redeemReward"]["__typename"], refused["redeemReward"]["code"]) == (
        "MemberUnderReview",
        "member_under_review",
    )
    assert await points(run, extras.merchant_id) == (1000, 300, 0)
    assert await redemptions(run, extras.merchant_id) == 0


async def test_a_customer_the_ledger_never_saw_has_no_points_to_redeem(extras, run):
    refused = data(await extras.query(REDEEM, extras.customer("zed"), reward="tote", key="k"))
    assert refused["redeemReward"] == {
        "__typename": "InsufficientPoints",
        "code": "insufficient_points",
        "message": "member 'zed' has 0 points available, needs 400",
        "availablePoints": 0,
    }
    assert await redemptions(run, extras.merchant_id) == 0


async def test_the_last_of_a_stock_goes_to_one_member(extras, run):
    await run(ops.earn, extras.merchant_id, "bob", 500, key="bob", description="d", source="t")
    first = await extras.query(REDEEM, extras.customer("ann"), reward="tote", key="a")
    assert data(first)["redeemReward"]["__typename"] == "Redemption"
    second = data(await extras.query(REDEEM, extras.customer("bob"), reward="tote", key="b"))
    assert (second["redeemReward"]["__typename"], second["redeemReward"]["reason"]) == (
        "RewardUnavailable",
        "out_of_stock",
    )
    assert await points(run, extras.merchant_id, "bob") == (500, 0, 0)


async def test_a_bad_idempotency_key_is_refused_before_anything_runs(extras, run):
    answer = await extras.query(REDEEM, extras.customer("ann"), reward="tote", key="")
    assert answer["errors"][0]["extensions"] == {"code": "query_refused"}
    assert await redemptions(run, extras.merchant_id) == 0


# --- leaderboard and optIntoLeaderboard -------------------------------------------------------


async def test_the_leaderboard_ranks_opted_in_members_only(extras, run):
    merchant, month = extras.merchant_id, await this_month(run)
    for member, earned in (("bob", 500), ("cat", 5000)):
        await run(ops.earn, merchant, member, earned, key=member, description="d", source="t")
    joined = {}
    for member in ("ann", "bob"):
        answer = data(await extras.query(OPT_IN, extras.customer(member), optIn=True))
        assert answer["optIntoLeaderboard"]["__typename"] == "LeaderboardMembership"
        joined[member] = answer["optIntoLeaderboard"]["alias"]
    repeat = data(await extras.query(OPT_IN, extras.customer("ann"), optIn=True))
    assert repeat["optIntoLeaderboard"] == {
        "__typename": "LeaderboardMembership",
        "optedIn": True,
        "alias": joined["ann"],
    }
    assert (await member_row(run, merchant))[1] == joined["ann"]

    board = data(await extras.query(LEADERBOARD, extras.customer("bob"), period=month))
    assert board["leaderboard"] == {
        "period": month,
        "rows": [
            {"rank": 1, "alias": joined["ann"], "points": 1300},  # cat's 5000: not opted in
            {"rank": 2, "alias": joined["bob"], "points": 500},
        ],
        "me": {"alias": joined["bob"], "rank": 2, "points": 500},
    }
    top = data(await extras.query(LEADERBOARD, extras.customer("bob"), period=month, first=1))
    assert [r["alias"] for r in top["leaderboard"]["rows"]] == [joined["ann"]]
    assert top["leaderboard"]["me"]["rank"] == 2  # the member's place even below the rows shown
    cat = data(await extras.query(LEADERBOARD, extras.customer("cat"), period=month))
    assert cat["leaderboard"]["me"] is None
    assert "ann" not in str(board) and "bob" not in str(board)

    left = data(await extras.query(OPT_IN, extras.customer("ann"), optIn=False))
    assert left["optIntoLeaderboard"] == {
        "__typename": "LeaderboardMembership",
        "optedIn": False,
        "alias": None,
    }
    assert (await member_row(run, merchant))[1] is None
    after = data(await extras.query(LEADERBOARD, extras.customer("ann"), period=month))
    assert after["leaderboard"]["rows"] == [{"rank": 1, "alias": joined["bob"], "points": 500}]
    assert after["leaderboard"]["me"] is None


async def test_an_opted_in_member_without_points_this_month_has_no_rank(extras, run):
    data(await extras.query(OPT_IN, extras.customer("dan"), optIn=True))
    board = data(await extras.query(LEADERBOARD, extras.customer("dan"), period="2020-01"))
    assert board["leaderboard"]["rows"] == []
    assert board["leaderboard"]["me"]["rank"] is None
    assert board["leaderboard"]["me"]["points"] == 0


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"period": "2026-13"}, "invalid_period"),
        ({"period": "last month"}, "invalid_period"),
        ({"period": "2026-11", "first": 0}, "query_refused"),
        ({"period": "2026-11", "first": 101}, "query_refused"),
    ],
)
async def test_a_bad_period_or_page_is_a_clear_error(extras, variables, code):
    answer = await extras.query(LEADERBOARD, extras.customer("ann"), **variables)
    [error] = answer["errors"]
    assert error["extensions"] == {"code": code}
    if code == "invalid_period":
        assert "YYYY-MM" in error["message"]


async def test_without_a_leaderboard_joining_is_refused_and_changes_nothing(shop, run):
    """The shop's own program has no leaderboard."""
    refused = data(await shop.query(OPT_IN, shop.customer("ann"), optIn=True))
    assert refused["optIntoLeaderboard"] == {
        "__typename": "LeaderboardDisabled",
        "code": "leaderboard_disabled",
        "message": f"merchant {shop.merchant_id!r} has no leaderboard",
    }
    assert await member_row(run, shop.merchant_id) is None
    answer = await shop.query(LEADERBOARD, shop.customer("ann"), period="2026-11")
    assert answer["errors"][0]["extensions"] == {"code": "leaderboard_disabled"}


# --- program ------------------------------------------------------------------------------------


async def test_program_tells_the_rules_in_force_in_words(extras):
    found = data(await extras.query(PROGRAM, extras.customer("ann")))["program"]
    assert (found["name"], found["currency"]) == ("Checkout", "EUR")
    sections = {s["title"]: s["lines"] for s in found["sections"]}
    assert list(sections) == [
        "Earning points",
        "When your points are yours",
        "Tiers",
        "Rewards",
        "Referring friends",
        "Challenges",
        "Leaderboard",
    ]
    assert sections["Earning points"] == [
        "2 points for every 1 EUR you spend.",
        "No points on gift_card.",
        "10 points: Thanks for your review.",
        "Now, Black Friday: 2 times the points, until 2026-11-30 00:00 UTC.",
    ]
    assert sections["When your points are yours"][0].startswith(
        "Points for an order are pending for 14 days"
    )
    assert (
        "Tote bag: 400 points for the product, added to your order for free"
        in (sections["Rewards"][2])
    )


# --- who may call --------------------------------------------------------------------------------

FOR_CUSTOMERS_ONLY = [
    pytest.param(ME, {}, id="me-extras"),
    pytest.param(REWARDS, {}, id="rewards"),
    pytest.param(LEADERBOARD, {"period": "2026-11"}, id="leaderboard"),
    pytest.param(PROGRAM, {}, id="program"),
    pytest.param(CREATE_LINK, {}, id="createReferralLink"),
    pytest.param(OPT_IN, {"optIn": True}, id="optIntoLeaderboard"),
    pytest.param(REDEEM, {"reward": "tote", "key": "k"}, id="redeemReward"),
]


@pytest.mark.parametrize(("text", "variables"), FOR_CUSTOMERS_ONLY)
async def test_a_storefront_key_is_forbidden_the_customers_operations(extras, run, text, variables):
    answer = await extras.query(text, extras.storefront, **variables)
    assert answer["errors"][0]["extensions"] == {"code": "forbidden"}
    assert "needs a customer credential" in answer["errors"][0]["message"]
    assert await member_row(run, extras.merchant_id) is None
    assert await points(run, extras.merchant_id) == (1000, 300, 0)
    assert await redemptions(run, extras.merchant_id) == 0


async def test_a_customer_of_another_merchant_sees_only_their_own(extras, run):
    other = await new_shop(run, "Other Shop")
    theirs = EXTRAS.replace('"tote"', '"mug"').replace('"Tote bag"', '"Mug"')
    await run(save_program, other.merchant_id, parse_program(theirs), effective_from=SINCE)

    b = Shop(other, extras.client)
    month = await this_month(run)
    a_ann = data(await extras.query(OPT_IN, extras.customer("ann"), optIn=True))
    b_ann = data(await b.query(OPT_IN, b.customer("ann"), optIn=True))
    a_alias = a_ann["optIntoLeaderboard"]["alias"]
    b_alias = b_ann["optIntoLeaderboard"]["alias"]

    board = data(await b.query(LEADERBOARD, b.customer("ann"), period=month))["leaderboard"]
    assert [r["alias"] for r in board["rows"]] == [b_alias]
    assert board["me"]["alias"] == b_alias and a_alias != b_alias

    rewards = data(await b.query(REWARDS, b.customer("ann")))["rewards"]
    assert [r["id"] for r in rewards] == ["five-off", "gold-pct", "mug", "socks"]

    # A's reward id means nothing at B: unknown there, and A's stock is untouched.
    refused = data(await b.query(REDEEM, b.customer("ann"), reward="tote", key="x"))
    assert refused["redeemReward"]["reason"] == "unknown_reward"
    assert await points(run, other.merchant_id) == (1000, 300, 0)
    ours = data(await extras.query(REDEEM, extras.customer("ann"), reward="tote", key="x"))
    assert ours["redeemReward"]["__typename"] == "Redemption"  # the same key, another merchant

    a_code = data(await extras.query(CREATE_LINK, extras.customer("ann")))["createReferralLink"]
    b_me = data(await b.query(ME, b.customer("ann")))["me"]
    assert b_me["referral"] is None  # A's code is A's
    assert a_code["code"] is not None


def test_the_docs_examples_are_valid_queries():
    """Every ```graphql block of docs/graphql.md validates against the schema served."""
    doc = (Path(__file__).parents[2] / "docs" / "graphql.md").read_text()
    blocks = re.findall(r"```graphql\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) >= 5
    schema = build_schema(production=False)._schema
    for block in blocks:
        assert validate(schema, parse(block)) == [], block
