"""A customer's own view through `/graphql` with a customer token: balances, tier, history in
the ledger's words with each earn's status, expiring points and suggestions."""

from __future__ import annotations

from pointguard.ledger import operations as ops

ME = """
query Me($first: Int!, $after: String) {
  me {
    memberId
    balance { available pending reserved }
    tier { name benefits }
    nextTier { name remaining periodEnd }
    history(first: $first, after: $after) {
      entries { kind description availableChange pendingChange status }
      nextCursor
    }
    expiringSoon(days: 30) { points }
    suggestions { rewardId pointsShort }
  }
}
"""


async def test_me_shows_the_customer_their_points_in_words(shop, run):
    await run(ops.set_release_held, shop.merchant_id, await pending_lot(run, shop), held=True)
    answer = await shop.query(ME, shop.customer("ann"), first=20)
    assert "errors" not in answer, answer
    me = answer["data"]["me"]
    assert me["memberId"] == "ann"
    assert me["balance"] == {"available": 1000, "pending": 300, "reserved": 0}
    assert me["tier"] is None  # no order reviewed into a tier yet
    assert me["nextTier"] == {
        "name": "Silver",
        "remaining": 0,
        "periodEnd": "2027-11-20T12:00:00+00:00",
    }
    assert me["history"] == {
        "entries": [
            {
                "kind": "earn",
                "description": "300 points welcome gift",
                "availableChange": 0,
                "pendingChange": 300,
                "status": "held",
            },
            {
                "kind": "earn",
                "description": "1000 points welcome gift",
                "availableChange": 1000,
                "pendingChange": 0,
                "status": "released",
            },
        ],
        "nextCursor": None,
    }
    assert me["expiringSoon"] is None
    assert me["suggestions"] == [{"rewardId": "five-off", "pointsShort": 0}]


async def test_history_pages_with_a_cursor(shop):
    first = (await shop.query(ME, shop.customer("ann"), first=1))["data"]["me"]["history"]
    assert [e["description"] for e in first["entries"]] == ["300 points welcome gift"]
    rest = await shop.query(ME, shop.customer("ann"), first=1, after=first["nextCursor"])
    page = rest["data"]["me"]["history"]
    assert [e["description"] for e in page["entries"]] == ["1000 points welcome gift"]
    assert page["nextCursor"] is None


async def test_an_oversized_page_is_refused_with_a_clear_error(shop):
    answer = await shop.query(ME, shop.customer("ann"), first=1000)
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "query_refused"}
    assert error["message"] == "history(first:) must be 1 to 100, not 1000"


async def pending_lot(run, shop) -> int:
    pending = await run(
        lambda pg: pg.fetchval(
            "SELECT lot_id FROM ledger_lots WHERE merchant_id = $1 AND pending_points > 0",
            shop.merchant_id,
        )
    )
    return int(pending)


async def test_a_page_of_history_costs_the_same_statements_whatever_its_size(
    shop, run, count_statements
):
    for n in range(120):
        await run(ops.earn, shop.merchant_id, "ann", 1, key=f"n{n}", description="1", source="t")
    await shop.query(ME, shop.customer("ann"), first=1)  # the credentials, cached from now on
    counts = []
    for first in (5, 100):
        async with count_statements() as counted:
            answer = await shop.query(ME, shop.customer("ann"), first=first)
        assert len(answer["data"]["me"]["history"]["entries"]) == first
        counts.append(counted.total)
    assert counts[0] == counts[1] and counts[0] > 0, counts
