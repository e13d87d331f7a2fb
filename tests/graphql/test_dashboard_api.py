"""`pointsOverTime`: the dashboard's figures, bucket by bucket, against a small ledger whose
entries are dated on known days (the ledger dates entries by the database's clock when they
are posted, so the test moves them to their days afterwards)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pointguard.ledger import operations as ops
from pointguard.ledger.balances import outstanding_liability
from pointguard.plugin.api_keys import KeyRole, new_api_key

START = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
FIELDS = (
    "start end issued released redeemed expired forfeited pending held available reserved liability"
)
POINTS_OVER_TIME = f"""
query Points($start: DateTime!, $end: DateTime!, $bucket: BucketSize) {{
  pointsOverTime(start: $start, end: $end, bucket: $bucket) {{ {FIELDS} }}
}}"""
SOURCE = {"description": "test", "source": "test"}


async def dated(run, merchant_id: str, entry_id: int, at: datetime) -> None:
    """Move an entry to `at`. Entries are append-only (a trigger refuses the update); the test
    sets it aside for its own transaction only."""

    async def move(pg: Any) -> None:
        await pg.execute("SET LOCAL session_replication_role = replica")
        moved = await pg.execute(
            "UPDATE ledger_entries SET created_at = $3 WHERE merchant_id = $1 AND entry_id = $2",
            merchant_id,
            entry_id,
            at,
        )
        assert moved == "UPDATE 1"

    await run(move)


async def held_for_review(
    run, merchant_id: str, member: str, entry_id: int, at: datetime, **case: Any
) -> None:
    """What the guard writes when it holds an earn: a case and a held decision naming it."""
    await run(ops.set_release_held, merchant_id, entry_id, held=True)
    case_id = await run(
        lambda pg: pg.fetchval(
            "INSERT INTO fraud_cases (merchant_id, member_id, opened_at, status, decided_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING case_id",
            merchant_id,
            member,
            at,
            case.get("status", "open"),
            case.get("decided_at"),
        )
    )
    await run(
        lambda pg: pg.execute(
            "INSERT INTO fraud_decisions (merchant_id, intent_key, event_id, member_id, points,"
            " source, decision, score, decided_by, feature_schema, case_id, ledger_entry_id,"
            " decided_at) VALUES ($1, $2, $2, $3, 1, 'order', 'hold', 1, 'rules', 1, $4, $5, $6)",
            merchant_id,
            f"intent-{member}",
            member,
            case_id,
            entry_id,
            at,
        )
    )


async def small_ledger(run, merchant_id: str, start: datetime = START) -> None:
    """Before `start`: ann's 1,000 available and 300 pending (the shop's). Then, day by day:
    0 bob earns 200 pending; 1 they are released; 2 ann redeems 500 and reserves 100 more;
    3 cat earns 50 and they expire; 4 dan earns 80 and eve 70, both held for review;
    5 eve's case is confirmed and her 70 forfeited (dan's stays open); 6 nothing."""
    for entry_id in await run(
        lambda pg: pg.fetch(
            "SELECT entry_id FROM ledger_entries WHERE merchant_id = $1", merchant_id
        )
    ):
        await dated(run, merchant_id, entry_id["entry_id"], start - DAY)

    async def on(day: int, entry: Any) -> Any:
        await dated(run, merchant_id, entry.entry_id, start + day * DAY + timedelta(hours=1))
        return entry

    later = start + 30 * DAY
    bob = await on(
        0, await run(ops.earn, merchant_id, "bob", 200, key="b", release_at=later, **SOURCE)
    )
    await on(1, await run(ops.release, merchant_id, bob.entry_id))
    reserve = {"now": datetime.now(UTC), "timeout_s": 3_600, **SOURCE}
    hold = await on(2, await run(ops.reserve, merchant_id, "ann", 500, key="r1", **reserve))
    await on(2, await run(ops.capture, merchant_id, hold.entry_id, description="redeemed"))
    await on(2, await run(ops.reserve, merchant_id, "ann", 100, key="r2", **reserve))
    await on(3, await run(ops.earn, merchant_id, "cat", 50, key="c", **SOURCE))
    await on(3, await run(ops.expire_member, merchant_id, "cat", key="x", **SOURCE))
    dan = await on(
        4, await run(ops.earn, merchant_id, "dan", 80, key="d", release_at=later, **SOURCE)
    )
    eve = await on(
        4, await run(ops.earn, merchant_id, "eve", 70, key="e", release_at=later, **SOURCE)
    )
    await held_for_review(run, merchant_id, "dan", dan.entry_id, start)
    confirmed = start + 5 * DAY + timedelta(hours=2)
    await held_for_review(
        run, merchant_id, "eve", eve.entry_id, start, status="confirmed", decided_at=confirmed
    )
    await on(5, await run(ops.forfeit, merchant_id, eve.entry_id, **SOURCE))


def bucket(day: int, **figures: int) -> dict[str, Any]:
    start = START + day * DAY
    return {
        "start": start.isoformat(),
        "end": (start + DAY).isoformat(),
        **{k: 0 for k in ("issued", "released", "redeemed", "expired", "forfeited")},
        **figures,
    }


def balances(pending: int, held: int, available: int, reserved: int) -> dict[str, int]:
    return {
        "pending": pending,
        "held": held,
        "available": available,
        "reserved": reserved,
        "liability": pending + available + reserved,
    }


EXPECTED_DAYS = [
    bucket(0, issued=200, **balances(500, 0, 1000, 0)),
    bucket(1, released=200, **balances(300, 0, 1200, 0)),
    bucket(2, redeemed=500, **balances(300, 0, 600, 100)),
    bucket(3, issued=50, expired=50, **balances(300, 0, 600, 100)),
    bucket(4, issued=150, **balances(450, 150, 600, 100)),
    bucket(5, forfeited=70, **balances(380, 80, 600, 100)),
    bucket(6, **balances(380, 80, 600, 100)),
]


async def reviewer(run, merchant_id: str) -> dict[str, str]:
    key = await run(new_api_key, merchant_id, KeyRole.REVIEWER, "rita")
    return {"authorization": f"Bearer {key}"}


async def test_the_figures_per_day_and_per_week(shop, run):
    await small_ledger(run, shop.merchant_id)
    key = await reviewer(run, shop.merchant_id)
    end = START + 7 * DAY
    days = await shop.query(POINTS_OVER_TIME, key, start=START.isoformat(), end=end.isoformat())
    assert days == {"data": {"pointsOverTime": EXPECTED_DAYS}}
    # the ledger agrees with the last bucket: nothing was posted after it
    assert await run(outstanding_liability, shop.merchant_id) == 1080

    week = await shop.query(
        POINTS_OVER_TIME, key, start=START.isoformat(), end=end.isoformat(), bucket="WEEK"
    )
    assert week["data"]["pointsOverTime"] == [
        {
            "start": START.isoformat(),
            "end": end.isoformat(),
            "issued": 400,
            "released": 200,
            "redeemed": 500,
            "expired": 50,
            "forfeited": 70,
            **balances(380, 80, 600, 100),
        }
    ]


async def test_the_last_bucket_ends_at_the_end_and_starts_may_fall_mid_day(shop, run):
    await small_ledger(run, shop.merchant_id)
    key = await reviewer(run, shop.merchant_id)
    start, end = START + DAY + timedelta(hours=12), START + 3 * DAY
    answer = await shop.query(POINTS_OVER_TIME, key, start=start.isoformat(), end=end.isoformat())
    buckets = answer["data"]["pointsOverTime"]
    assert [(b["start"], b["end"]) for b in buckets] == [
        (start.isoformat(), (start + DAY).isoformat()),
        ((start + DAY).isoformat(), end.isoformat()),
    ]
    # day 1's release (at 01:00) is before the start: in the opening balances, not a flow;
    # day 2's redemption (at 01:00) is in the first bucket, which ends at day 2 12:00
    assert [(b["released"], b["redeemed"], b["available"], b["reserved"]) for b in buckets] == [
        (0, 500, 600, 100),
        (0, 0, 600, 100),
    ]


async def test_admin_keys_may_ask_too(shop, run):
    await small_ledger(run, shop.merchant_id)
    admin = await run(new_api_key, shop.merchant_id, KeyRole.ADMIN, "ada")
    end = START + 7 * DAY
    answer = await shop.query(
        POINTS_OVER_TIME,
        {"authorization": f"Bearer {admin}"},
        start=START.isoformat(),
        end=end.isoformat(),
    )
    assert answer["data"]["pointsOverTime"] == EXPECTED_DAYS


async def test_bad_periods_are_refused_with_a_clear_error(shop, run):
    key = await reviewer(run, shop.merchant_id)
    cases = [
        (START, START + 367 * DAY, "DAY", "the period has 367 buckets of a day; at most 366"),
        (START, START + 367 * 7 * DAY, "WEEK", "the period has 367 buckets of a week"),
        (START, START, "DAY", "the period must start before it ends"),
        (START + DAY, START, "WEEK", "the period must start before it ends"),
    ]
    for start, end, size, message in cases:
        answer = await shop.query(
            POINTS_OVER_TIME, key, start=start.isoformat(), end=end.isoformat(), bucket=size
        )
        assert answer["data"] is None
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "invalid_period"
        assert message in error["message"]
    # 366 days is the most
    answer = await shop.query(
        POINTS_OVER_TIME, key, start=START.isoformat(), end=(START + 366 * DAY).isoformat()
    )
    assert len(answer["data"]["pointsOverTime"]) == 366


async def test_the_docs_example_runs_as_written(shop, run):
    text = (Path(__file__).parents[2] / "docs" / "graphql.md").read_text()
    [example] = re.findall(r"^```graphql dashboard\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    await small_ledger(run, shop.merchant_id)
    key = await reviewer(run, shop.merchant_id)
    end = START + 7 * DAY
    answer = await shop.query(example, key, start=START.isoformat(), end=end.isoformat())
    assert answer == {"data": {"pointsOverTime": EXPECTED_DAYS}}
    # and the answer the docs show is day 4's
    [shown] = re.findall(r"^```json\n(\{\"start\".*?)^```$", text, re.MULTILINE | re.DOTALL)
    day4 = json.loads(shown)
    assert {k: v for k, v in day4.items() if k not in ("start", "end")} == {
        k: v for k, v in EXPECTED_DAYS[4].items() if k not in ("start", "end")
    }


async def test_the_answer_costs_the_same_statements_whatever_the_number_of_buckets(
    shop, run, count_statements
):
    await small_ledger(run, shop.merchant_id)
    key = await reviewer(run, shop.merchant_id)
    await shop.query(POINTS_OVER_TIME, key, start=START.isoformat(), end=(START + DAY).isoformat())
    counts = []
    for days in (1, 366):
        end = (START + days * DAY).isoformat()
        async with count_statements() as counted:
            answer = await shop.query(POINTS_OVER_TIME, key, start=START.isoformat(), end=end)
        assert len(answer["data"]["pointsOverTime"]) == days
        counts.append(counted.total)
    assert counts[0] == counts[1] == 3, counts  # begin, the figures, end
