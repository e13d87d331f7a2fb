"""The reviewers' API on cases the fraud guard opened for real: ann refers bob and both pay
with one card, so the guard holds ann's referrer reward and bob's referee reward, one case
each. Reviewer keys (alice, bea) read the queue and the cases and decide them; the ledger says
what each decision did, and a refusal changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pointguard import db
from pointguard.fraud.cases import load_case, load_open_cases
from pointguard.fraud.features import NOT_APPLICABLE
from pointguard.fraud.signals import Signals
from pointguard.ledger import AccountKind, member_balances, system_balances
from pointguard.ledger import operations as ops
from pointguard.plugin.api_keys import KeyRole, new_api_key
from pointguard.plugin.merchants import create_merchant
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed
from pointguard.program.referrals.records import referral_code
from tests.fraud.test_guard_pipeline import GUARD, PROGRAM, order
from tests.graphql.conftest import CART, NOW, Shop
from tests.graphql.test_checkout_api import RESERVE
from tests.plugin.conftest import SECRET_KEY

DAY = timedelta(days=1)
T0 = NOW - 30 * DAY  # the program's return window (14 days) for every order below has passed

CASE_FIELDS = """
  id status openedAt decidedAt decidedBy note frozeMember heldEventCount heldPoints topScore
  heldBy member { id status openCaseId balance { available pending reserved } }
"""
QUEUE = f"""
query Queue($first: Int!, $after: String, $status: [CaseStatus!]) {{
  reviewCases(first: $first, after: $after, status: $status) {{
    cases {{ {CASE_FIELDS} }}
    nextCursor
  }}
}}
"""
FULL_CASE = f"""
  {CASE_FIELDS}
  heldEvents {{
    intentKey eventId points source score decidedBy reasons decidedAt ledgerEntryId
    features {{ name value }}
  }}
  reasons
  linkedMembers {{ member {{ id status openCaseId }} sharedIdentifiers }}
"""
CASE = f"""
query Case($id: ID!) {{
  reviewCase(id: $id) {{
    __typename
    ... on ReviewCase {{ {FULL_CASE} }}
    ... on Problem {{ code message }}
  }}
}}
"""
RESULT = f"""
    __typename
    ... on ReviewCase {{ {FULL_CASE} }}
    ... on Problem {{ code message }}
    ... on CaseAlreadyDecided {{ caseId status }}
"""
CLEAR = f"""
mutation Clear($id: ID!, $note: String) {{ clearCase(id: $id, note: $note) {{ {RESULT} }} }}
"""
CONFIRM = f"""
mutation Confirm($id: ID!, $freeze: Boolean!, $void: Boolean!, $note: String) {{
  confirmCase(id: $id, freezeMember: $freeze, voidReferralRewards: $void, note: $note) {{
    {RESULT}
  }}
}}
"""
RANGES = """
query Ranges($decisions: Int) {
  reviewFeatureRanges(decisions: $decisions) { decisions features { name values median p90 } }
}
"""
ESCALATE = f"""
mutation Escalate($id: ID!, $note: String) {{ escalateCase(id: $id, note: $note) {{ {RESULT} }} }}
"""


@dataclass(frozen=True)
class Review:
    shop: Shop
    keys: dict[str, str]  # key name → plaintext
    cases: dict[str, str]  # member → their case's id

    def key(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[name]}"}

    async def query(self, text: str, name: str, **variables: Any) -> dict[str, Any]:
        return await self.shop.query(text, self.key(name), **variables)

    @property
    def merchant_id(self) -> str:
        return self.shop.merchant_id


async def reviewed_shop(run, name: str) -> tuple[Any, dict[str, str]]:
    """A merchant with the program, a reviewer key alice and bea, and an admin key root."""
    made = await run(create_merchant, base64.b64decode(SECRET_KEY), name)
    merchant_id = made.merchant_id
    await run(save_program, merchant_id, parse_program(PROGRAM), effective_from=T0 - 100 * DAY)
    keys = {"storefront": made.api_key}
    for key_name, role in (("alice", KeyRole.REVIEWER), ("bea", KeyRole.REVIEWER)):
        keys[key_name] = await run(new_api_key, merchant_id, role, key_name)
    keys["root"] = await run(new_api_key, merchant_id, KeyRole.ADMIN, "root")
    return made, keys


@pytest.fixture
async def review(open_app, run) -> AsyncIterator[Review]:
    made, keys = await reviewed_shop(run, "Review Shop")
    merchant_id = made.merchant_id
    card = Signals(payment_fingerprint="card-A", ip="203.0.113.5")
    await run(apply_event, merchant_id, order("ann", 1, T0, signals=card), guard=GUARD)
    code = await run(referral_code, merchant_id, "ann")
    signup = ActionPerformed(
        event_id="w-bob-signup",
        member_id="bob",
        occurred_at=T0 + DAY,
        action="signup",
        referral_code=code,
        signals=Signals(ip="203.0.113.9"),
    )
    await run(apply_event, merchant_id, signup, guard=GUARD)
    await run(apply_event, merchant_id, order("bob", 1, T0 + 2 * DAY, signals=card), guard=GUARD)
    await run(ops.release_due, merchant_id, now=NOW)  # the orders' own points, not the held
    cases = await run(load_open_cases, merchant_id, ["ann", "bob"])
    async with open_app(clock=lambda: NOW, POINTGUARD_SECRET_KEY=SECRET_KEY) as (_, client):
        yield Review(Shop(made, client), keys, {m: str(c) for m, c in cases.items()})


async def points(run, review: Review, member: str) -> tuple[int, int, int]:
    found = await run(member_balances, review.merchant_id, member)
    return found.available_points, found.pending_points, found.reserved_points


async def forfeited(run, review: Review) -> int:
    return (await run(system_balances, review.merchant_id))[AccountKind.FORFEITED]


async def case_row(run, review: Review, member: str) -> tuple[str, str | None, bool]:
    case = await run(load_case, review.merchant_id, int(review.cases[member]))
    return case.status.value, case.decided_by, case.froze_member


async def test_the_queue_lists_the_open_cases_oldest_first_with_what_they_hold(review):
    answer = await review.query(QUEUE, "alice", first=20)
    assert "errors" not in answer, answer
    page = answer["data"]["reviewCases"]
    assert page["nextCursor"] is None
    cases = page["cases"]
    assert [c["member"]["id"] for c in cases] == sorted(
        review.cases, key=lambda member: int(review.cases[member])
    )
    assert [(c["openedAt"], int(c["id"])) for c in cases] == sorted(
        (c["openedAt"], int(c["id"])) for c in cases
    )
    by_member = {c["member"]["id"]: c for c in cases}
    ann, bob = by_member["ann"], by_member["bob"]
    assert (ann["id"], ann["status"], ann["decidedBy"], ann["decidedAt"]) == (
        review.cases["ann"],
        "OPEN",
        None,
        None,
    )
    assert (ann["heldEventCount"], ann["heldPoints"], ann["topScore"]) == (1, 500, 1.0)
    assert (bob["heldEventCount"], bob["heldPoints"], bob["topScore"]) == (1, 200, 1.0)
    assert ann["heldBy"] == bob["heldBy"] == ["self_referral"]
    assert ann["member"] == {
        "id": "ann",
        "status": "UNDER_REVIEW",
        "openCaseId": review.cases["ann"],
        "balance": {"available": 50, "pending": 500, "reserved": 0},
    }
    assert bob["member"]["balance"] == {"available": 50, "pending": 200, "reserved": 0}

    # A page of one, then the next from its cursor; no decided cases in the default queue.
    first = (await review.query(QUEUE, "alice", first=1))["data"]["reviewCases"]
    assert [c["id"] for c in first["cases"]] == [cases[0]["id"]]
    second = await review.query(QUEUE, "alice", first=1, after=first["nextCursor"])
    assert second["data"]["reviewCases"] == {"cases": [cases[1]], "nextCursor": None}
    decided = await review.query(QUEUE, "alice", first=5, status=["CLEARED", "CONFIRMED"])
    assert decided["data"]["reviewCases"]["cases"] == []
    every = await review.query(QUEUE, "alice", first=5, status=["OPEN", "CLEARED", "OPEN"])
    assert every["data"]["reviewCases"]["cases"] == cases
    assert (await review.query(QUEUE, "alice", first=5, status=[]))["data"]["reviewCases"] == {
        "cases": [],
        "nextCursor": None,
    }


async def test_the_case_shows_held_events_reasons_features_and_linked_members(review):
    answer = await review.query(CASE, "alice", id=review.cases["bob"])
    assert "errors" not in answer, answer
    case = answer["data"]["reviewCase"]
    assert case["__typename"] == "ReviewCase" and case["member"]["id"] == "bob"
    [held] = case["heldEvents"]
    assert (held["source"], held["points"], held["decidedBy"], held["score"]) == (
        "referral:referee",
        200,
        "self_referral",
        1.0,
    )
    assert held["reasons"] == ["the referrer and the referee share a payment card"]
    assert case["reasons"] == held["reasons"]
    assert held["ledgerEntryId"] is not None and held["eventId"] == "w-bob-1"
    features = {f["name"]: f["value"] for f in held["features"]}
    assert features["referral_shared"] == ["card", "ip_prefix"]
    assert features["component_members"] == 2
    assert [f["name"] for f in held["features"]] == sorted(features)
    assert case["linkedMembers"] == [
        {
            "member": {"id": "ann", "status": "UNDER_REVIEW", "openCaseId": review.cases["ann"]},
            "sharedIdentifiers": ["card", "ip_prefix"],
        }
    ]


async def test_clearing_releases_the_held_points_and_records_the_reviewer(run, review):
    answer = await review.query(CLEAR, "alice", id=review.cases["bob"], note="a real friend")
    assert "errors" not in answer, answer
    cleared = answer["data"]["clearCase"]
    assert cleared["__typename"] == "ReviewCase", answer
    assert (cleared["status"], cleared["decidedBy"], cleared["note"]) == (
        "CLEARED",
        "alice",
        "a real friend",
    )
    assert cleared["decidedAt"] == NOW.isoformat()
    assert cleared["member"]["status"] == "ACTIVE"
    # The referee reward's return window had passed: released at once.
    assert cleared["member"]["balance"] == {"available": 250, "pending": 0, "reserved": 0}
    assert await points(run, review, "bob") == (250, 0, 0)
    assert await case_row(run, review, "bob") == ("cleared", "alice", False)
    assert await points(run, review, "ann") == (50, 500, 0)  # ann's own case is still open
    queue = (await review.query(QUEUE, "alice", first=5))["data"]["reviewCases"]["cases"]
    assert [c["member"]["id"] for c in queue] == ["ann"]


async def test_confirming_with_a_freeze_forfeits_the_points_and_freezes_the_member(run, review):
    answer = await review.query(
        CONFIRM, "alice", id=review.cases["ann"], freeze=True, void=False, note="one card"
    )
    confirmed = answer["data"]["confirmCase"]
    assert confirmed["__typename"] == "ReviewCase", answer
    assert (confirmed["status"], confirmed["decidedBy"], confirmed["frozeMember"]) == (
        "CONFIRMED",
        "alice",
        True,
    )
    assert confirmed["member"]["status"] == "FROZEN"
    assert await points(run, review, "ann") == (50, 0, 0)
    assert await forfeited(run, review) == 500

    # A frozen member cannot spend: the checkout answers MemberUnderReview, nothing reserved.
    reserve = await review.query(
        RESERVE, "storefront", member="ann", reward="five-off", cart=CART, key="after-freeze"
    )
    assert reserve["data"]["reserveRedemption"]["__typename"] == "MemberUnderReview"
    assert await points(run, review, "ann") == (50, 0, 0)


async def referral_statuses(engine, review: Review) -> dict[str, str]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT referee_id, status FROM program_referrals WHERE merchant_id = $1",
            review.merchant_id,
        )
    return {row["referee_id"]: row["status"] for row in rows}


@pytest.mark.parametrize("void", [False, True])
async def test_confirming_may_void_what_the_members_referrals_earned(engine, run, review, void):
    before = await referral_statuses(engine, review)
    assert before["bob"] != "reversed"
    answer = await review.query(CONFIRM, "alice", id=review.cases["ann"], freeze=False, void=void)
    confirmed = answer["data"]["confirmCase"]
    assert (confirmed["status"], confirmed["frozeMember"]) == ("CONFIRMED", False), answer
    assert confirmed["member"]["status"] == "ACTIVE"
    expected = {"bob": "reversed"} if void else before
    assert await referral_statuses(engine, review) == expected
    assert await points(run, review, "ann") == (50, 0, 0)  # the held referrer reward: forfeited
    assert await forfeited(run, review) == 500


async def test_a_decided_case_cannot_be_decided_again(run, review):
    bob = review.cases["bob"]
    assert (await review.query(CLEAR, "alice", id=bob))["data"]["clearCase"]["status"] == (
        "CLEARED"
    )
    before = (await points(run, review, "bob"), await forfeited(run, review))
    for text, variables in (
        (CONFIRM, {"freeze": True, "void": True}),
        (CLEAR, {}),
        (ESCALATE, {}),
    ):
        answer = await review.query(text, "bea", id=bob, note="too late", **variables)
        [result] = answer["data"].values()
        assert result["__typename"] == "CaseAlreadyDecided", answer
        assert (result["code"], result["caseId"], result["status"]) == (
            "case_already_decided",
            bob,
            "CLEARED",
        )
        assert "alice" in result["message"]
    assert (await points(run, review, "bob"), await forfeited(run, review)) == before
    assert await case_row(run, review, "bob") == ("cleared", "alice", False)


async def test_an_escalated_case_stays_held_and_a_senior_decides_it(run, review):
    ann = review.cases["ann"]
    answer = await review.query(ESCALATE, "alice", id=ann, note="looks like a ring")
    escalated = answer["data"]["escalateCase"]
    assert (escalated["status"], escalated["decidedBy"]) == ("ESCALATED", "alice")
    assert escalated["member"]["status"] == "UNDER_REVIEW"
    assert await points(run, review, "ann") == (50, 500, 0)
    again = (await review.query(ESCALATE, "bea", id=ann))["data"]["escalateCase"]
    assert (again["__typename"], again["status"]) == ("CaseAlreadyDecided", "ESCALATED")
    queue = (await review.query(QUEUE, "alice", first=5, status=["ESCALATED"]))["data"]
    assert [c["id"] for c in queue["reviewCases"]["cases"]] == [ann]

    # An admin key decides as a reviewer does, under its own name.
    cleared = (await review.query(CLEAR, "root", id=ann))["data"]["clearCase"]
    assert (cleared["status"], cleared["decidedBy"]) == ("CLEARED", "root")
    assert await points(run, review, "ann") == (550, 0, 0)


async def test_two_reviewers_deciding_at_once_one_wins(run, review):
    bob = review.cases["bob"]
    answers = await asyncio.gather(
        review.query(CLEAR, "alice", id=bob),
        review.query(CONFIRM, "bea", id=bob, freeze=True, void=False),
    )
    results = [next(iter(answer["data"].values())) for answer in answers]
    kinds = sorted(result["__typename"] for result in results)
    assert kinds == ["CaseAlreadyDecided", "ReviewCase"], answers
    winner = next(r for r in results if r["__typename"] == "ReviewCase")
    loser = next(r for r in results if r["__typename"] == "CaseAlreadyDecided")
    assert loser["status"] == winner["status"]
    status, decided_by, froze = await case_row(run, review, "bob")
    if winner["status"] == "CLEARED":
        assert (status, decided_by, froze) == ("cleared", "alice", False)
        assert (await points(run, review, "bob"), await forfeited(run, review)) == ((250, 0, 0), 0)
    else:
        assert (status, decided_by, froze) == ("confirmed", "bea", True)
        assert (await points(run, review, "bob"), await forfeited(run, review)) == (
            (50, 0, 0),
            200,
        )


async def test_storefront_keys_and_customer_tokens_cannot_review(run, review):
    ann = review.cases["ann"]
    operations = [
        (QUEUE, {"first": 5}),
        (CASE, {"id": ann}),
        (CLEAR, {"id": ann}),
        (CONFIRM, {"id": ann, "freeze": True, "void": True}),
        (ESCALATE, {"id": ann}),
    ]
    for headers in (review.key("storefront"), review.shop.customer("ann")):
        for text, variables in operations:
            answer = await review.shop.query(text, headers, **variables)
            assert answer["data"] is None, answer
            assert [e["extensions"]["code"] for e in answer["errors"]] == ["forbidden"]
    assert await case_row(run, review, "ann") == ("open", None, False)
    assert (await points(run, review, "ann"), await forfeited(run, review)) == ((50, 500, 0), 0)


async def test_another_merchants_reviewer_finds_nothing_and_changes_nothing(run, review):
    _, other_keys = await reviewed_shop(run, "Other Shop")
    other = {"authorization": f"Bearer {other_keys['alice']}"}
    ann = review.cases["ann"]
    queue = await review.shop.query(QUEUE, other, first=50)
    assert queue["data"]["reviewCases"] == {"cases": [], "nextCursor": None}
    missing = await review.query(CASE, "alice", id="999999999")
    for text, variables in (
        (CASE, {"id": ann}),
        (CLEAR, {"id": ann}),
        (CONFIRM, {"id": ann, "freeze": True, "void": True}),
        (ESCALATE, {"id": ann}),
    ):
        answer = await review.shop.query(text, other, **variables)
        [result] = answer["data"].values()
        assert (result["__typename"], result["code"]) == ("NotFound", "not_found"), answer
        assert set(result) == set(next(iter(missing["data"].values())))
    assert await case_row(run, review, "ann") == ("open", None, False)
    assert (await points(run, review, "ann"), await forfeited(run, review)) == ((50, 500, 0), 0)
    for bad in ("not-a-number", "9" * 40):
        answer = await review.query(CLEAR, "alice", id=bad)
        assert answer["data"]["clearCase"]["__typename"] == "NotFound"


def flat(features: dict[str, Any]) -> dict[str, Any]:
    """A feature that is an object as one value per field, named feature.field."""
    found = {}
    for name, value in features.items():
        if isinstance(value, dict):
            found.update({f"{name}.{field}": v for field, v in value.items()})
        else:
            found[name] = value
    return found


def percentile(values: list[float], share: float) -> float:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    ordered = sorted(values)
    at = share * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


async def test_feature_ranges_are_the_latest_cleared_decisions_medians_and_p90s(
    engine, run, review
):
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT features::text AS f FROM fraud_decisions WHERE merchant_id = $1"
            " AND decision = 'clear' AND learn_seq IS NOT NULL ORDER BY learn_seq DESC",
            review.merchant_id,
        )
    learned = [flat(json.loads(row["f"])) for row in rows]
    assert len(learned) >= 2, "the fixture's guard learned no cleared decision"

    for limit in (len(learned), 1):
        answer = await review.query(RANGES, "alice", decisions=limit)
        assert "errors" not in answer, answer
        ranges = answer["data"]["reviewFeatureRanges"]
        assert ranges["decisions"] == limit
        read = learned[:limit]  # the newest first
        expected = {}
        for name in sorted({name for features in read for name in features}):
            values = [
                float(f[name])
                for f in read
                if isinstance(f.get(name), int | float)
                and not isinstance(f[name], bool)
                and f[name] != NOT_APPLICABLE
            ]
            if values:
                expected[name] = (len(values), percentile(values, 0.5), percentile(values, 0.9))
        found = {f["name"]: (f["values"], f["median"], f["p90"]) for f in ranges["features"]}
        assert found.keys() == expected.keys()
        for name, (count, median, p90) in expected.items():
            assert found[name][0] == count, name
            assert found[name][1:] == pytest.approx((median, p90)), name
    assert {"account_age_days", "history.orders_30d"} <= found.keys()

    for bad in (0, 1001):
        refused = await review.query(RANGES, "alice", decisions=bad)
        assert refused["data"] is None and "1 to 1000" in refused["errors"][0]["message"]
    _, other_keys = await reviewed_shop(run, "Ranges Elsewhere")
    other = {"authorization": f"Bearer {other_keys['alice']}"}
    nothing = await review.shop.query(RANGES, other)
    assert nothing["data"]["reviewFeatureRanges"] == {"decisions": 0, "features": []}


def doc_examples() -> list[str]:
    text = (Path(__file__).parents[2] / "docs" / "graphql.md").read_text()
    return re.findall(r"^```graphql review\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


async def test_the_docs_examples_run_as_written(run, review):
    queue, case, usual, decide = doc_examples()
    listed = await review.query(queue, "alice")
    assert len(listed["data"]["reviewCases"]["cases"]) == 2, listed
    assert listed["data"]["reviewCases"]["cases"][0]["heldBy"] == ["self_referral"], listed
    ranges = (await review.query(usual, "alice"))["data"]["reviewFeatureRanges"]
    assert ranges["decisions"] > 0 and ranges["features"], ranges
    shown = await review.query(case, "alice", id=review.cases["ann"])
    assert shown["data"]["reviewCase"]["linkedMembers"][0]["sharedIdentifiers"] == [
        "card",
        "ip_prefix",
    ], shown
    decided = await review.query(decide, "alice", id=review.cases["ann"])
    assert decided["data"]["confirmCase"]["member"] == {
        "status": "FROZEN",
        "balance": {"pending": 0},
    }, decided


async def test_page_limits_and_cursors_are_checked(review):
    for variables in ({"first": 0}, {"first": 101}, {"first": 5, "after": "nonsense"}):
        answer = await review.query(QUEUE, "alice", **variables)
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["query_refused"], answer
    long_note = await review.query(CLEAR, "alice", id=review.cases["bob"], note="x" * 2001)
    assert [e["extensions"]["code"] for e in long_note["errors"]] == ["query_refused"]


async def farm_shop(run) -> tuple[Any, dict[str, str]]:
    """A shop with twelve cases: each member's order held for a throwaway inbox, a minute apart."""
    made, keys = await reviewed_shop(run, "Busy Shop")
    for n in range(12):
        throwaway = Signals(email=f"farm{n}@mailinator.com")
        event = order(f"farm-{n:02}", 1, T0 + n * timedelta(minutes=1), signals=throwaway)
        await run(apply_event, made.merchant_id, event, guard=GUARD)
    return made, keys


async def test_riskiest_first_pages_by_top_score_then_age(open_app, run, engine):
    made, keys = await farm_shop(run)
    scores = [0.5, 0.9, 1.0, 0.5]  # as a model would score them, in turn
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE fraud_decisions SET score = (ARRAY[0.5, 0.9, 1.0, 0.5])[1 + right(member_id,"
            " 2)::int % 4] WHERE merchant_id = $1",
            made.merchant_id,
        )
    expected = sorted(range(12), key=lambda n: (-scores[n % 4], n))
    async with open_app(clock=lambda: NOW, POINTGUARD_SECRET_KEY=SECRET_KEY) as (_, client):
        shop = Shop(made, client)
        alice = {"authorization": f"Bearer {keys['alice']}"}
        text = QUEUE.replace(
            "$status: [CaseStatus!])", "$status: [CaseStatus!], $order: CaseOrder)"
        )
        text = text.replace("status: $status)", "status: $status, order: $order)")
        seen, after = [], None
        for _ in range(3):
            answer = await shop.query(text, alice, first=5, after=after, order="RISKIEST_FIRST")
            page = answer["data"]["reviewCases"]
            seen += [(c["member"]["id"], c["topScore"]) for c in page["cases"]]
            after = page["nextCursor"]
        assert after is None
        assert seen == [(f"farm-{n:02}", scores[n % 4]) for n in expected]
        oldest = await shop.query(text, alice, first=5, order="OLDEST_FIRST")
        cursor = oldest["data"]["reviewCases"]["nextCursor"]
        mixed = await shop.query(text, alice, first=5, after=cursor, order="RISKIEST_FIRST")
        assert [e["extensions"]["code"] for e in mixed["errors"]] == ["query_refused"]


async def test_the_queue_costs_the_same_statements_whatever_the_page_size(
    open_app, run, monkeypatch
):
    """Twelve members, each held for a throwaway inbox: a page of 50 (all twelve, with their
    status and balances) runs the statements a page of 5 does."""
    made, keys = await farm_shop(run)
    statements: list[str] = []
    original = db.connection

    @asynccontextmanager
    async def counted(engine):
        def log(record):
            statements.append(record.query)

        async with original(engine) as pg:
            pg.add_query_logger(log)
            try:
                yield pg
            finally:
                pg.remove_query_logger(log)

    monkeypatch.setattr(db, "connection", counted)
    async with open_app(clock=lambda: NOW, POINTGUARD_SECRET_KEY=SECRET_KEY) as (_, client):
        shop = Shop(made, client)
        alice = {"authorization": f"Bearer {keys['alice']}"}
        await shop.query(QUEUE, alice, first=1)  # the key is looked up once, then cached
        counts = {}
        for first in (5, 50):
            statements.clear()
            answer = await shop.query(QUEUE, alice, first=first)
            assert len(answer["data"]["reviewCases"]["cases"]) == min(first, 12)
            counts[first] = len(statements)
    assert counts[5] == counts[50], (counts, statements)
    assert counts[50] == 5, statements  # BEGIN, the page, the standings, the balances, COMMIT
