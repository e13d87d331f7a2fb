"""Reward suggestions (pure, then loaded) and the opt-in pseudonymous leaderboard."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard.errors import InvalidPeriod, LeaderboardDisabled
from pointguard.ledger import operations as ops
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.reports.leaderboard import (
    join_leaderboard,
    leave_leaderboard,
    monthly_leaderboard,
    parse_month,
)
from pointguard.program.rewards.suggestions import member_suggestions, suggest_rewards

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

PROGRAM = """
name = "Suggest"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[leaderboard]
enabled = {enabled}
[[tiers.levels]]
name = "Bronze"
threshold = 0
[[tiers.levels]]
name = "Gold"
threshold = 100000
[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 off"
cost_points = 500
amount_minor = 500
[[rewards]]
type = "free_product"
id = "socks"
name = "Free socks"
cost_points = 600
sku = "SOCK"
categories = ["socks", "shoes"]
[[rewards]]
type = "free_product"
id = "boots"
name = "Free boots"
cost_points = 5000
sku = "BOOT"
categories = ["shoes"]
[[rewards]]
type = "free_shipping"
id = "gold-ship"
name = "Gold free shipping"
cost_points = 100
tiers = ["Gold"]
"""
SUGGEST = parse_program(PROGRAM.format(enabled="false"))


@pytest.mark.parametrize(
    ("available", "tier", "categories", "expected"),
    [
        pytest.param(600, "Bronze", frozenset(), ["five-off", "socks"], id="both-affordable"),
        pytest.param(480, "Bronze", frozenset(), ["five-off", "socks"], id="nearly: 1/5 short"),
        pytest.param(479, "Bronze", frozenset(), ["five-off"], id="too-far-from-socks"),
        pytest.param(
            600, "Bronze", frozenset({"shoes"}), ["socks", "five-off"], id="fit-ranks-first"
        ),
        pytest.param(
            4000,
            "Bronze",
            frozenset({"shoes"}),
            ["socks", "boots", "five-off"],
            id="fit-then-affordable-before-nearly",
        ),
        pytest.param(
            600,
            "Gold",
            frozenset(),
            ["five-off", "socks", "gold-ship"],
            id="tier-rewards-for-the-tier",
        ),
    ],
)
def test_suggestions(available, tier, categories, expected):
    found = suggest_rewards(SUGGEST, available_points=available, tier=tier, categories=categories)
    assert [s.reward_id for s in found] == expected


async def test_member_suggestions_use_the_ledger_balance(run, merchant):
    now = datetime.now(UTC)
    await run(save_program, merchant, SUGGEST, effective_from=now - timedelta(days=1))
    await run(ops.earn, merchant, "ann", 550, key="e1", description="d", source="t")
    found = await run(member_suggestions, merchant, "ann", now)
    assert [(s.reward_id, s.points_short) for s in found] == [("five-off", 0), ("socks", 50)]


async def test_leaderboard_is_opt_in_and_pseudonymous(run, merchant):
    now = datetime.now(UTC)
    await run(
        save_program,
        merchant,
        parse_program(PROGRAM.format(enabled="true")),
        effective_from=now - timedelta(days=1),
    )
    for member, points in (("ann", 300), ("bob", 500), ("cat", 900)):
        await run(
            ops.earn, merchant, member, points, key=f"e-{member}", description="d", source="t"
        )
    ann = await run(join_leaderboard, merchant, "ann", now)
    bob = await run(join_leaderboard, merchant, "bob", now)
    assert await run(join_leaderboard, merchant, "ann", now) == ann  # kept
    assert "ann" not in ann and "bob" not in bob
    board = await run(monthly_leaderboard, merchant, now)
    assert [(r.rank, r.alias, r.points) for r in board] == [(1, bob, 500), (2, ann, 300)]
    await run(leave_leaderboard, merchant, "bob")
    assert [r.alias for r in await run(monthly_leaderboard, merchant, now)] == [ann]
    last_month = now.replace(day=1) - timedelta(days=1)
    assert await run(monthly_leaderboard, merchant, last_month) == []


async def test_leaderboard_needs_the_program_to_enable_it(run, merchant):
    now = datetime.now(UTC)
    await run(save_program, merchant, SUGGEST, effective_from=now - timedelta(days=1))
    with pytest.raises(LeaderboardDisabled):
        await run(join_leaderboard, merchant, "ann", now)


def test_a_period_is_a_month():
    assert parse_month("2026-02") == datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-2", "26-02", "2026-02-01", ""])
def test_anything_but_a_month_is_refused(text):
    with pytest.raises(InvalidPeriod, match="YYYY-MM"):
        parse_month(text)
