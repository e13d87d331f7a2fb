"""Surprise bonuses: the seeded member pick, then runs on the real database that stay within
the budget and replay by run key, with the ledger verified intact at the end."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from pointguard.ledger import AccountKind, system_balances
from pointguard.program.chance.surprises import pick_members, run_surprise
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
SEED = bytes(range(32))

PROGRAM = """
name = "Lucky"
currency = "EUR"
earning = { points_per_major_unit = "1" }

[[chance.surprises]]
id = "tight"
name = "Monday surprise"
points = 100
members = 3
budget_points = 250

[[chance.surprises]]
id = "roomy"
name = "Friday surprise"
points = 10
members = 4
budget_points = 100000
"""


def test_pick_members_is_deterministic_and_ignores_order_and_repeats():
    eligible = [f"m{i}" for i in range(20)]
    picked = pick_members(SEED, eligible, 5)
    assert len(set(picked)) == 5 and set(picked) <= set(eligible)
    assert pick_members(SEED, list(reversed(eligible)) + eligible, 5) == picked
    assert pick_members(bytes(32), eligible, 5) != picked
    assert pick_members(SEED, ["a", "b"], 5) == sorted(
        ["a", "b"], key=lambda m: hashlib.sha256(SEED + m.encode()).digest()
    )
    assert pick_members(SEED, eligible, -1) == []


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(1))
    return merchant


async def test_surprise_bonus_picks_by_seed_and_stays_within_budget(
    run, shop, available, assert_ledger_intact
):
    eligible = [f"m{i}" for i in range(10)]
    first = await run(run_surprise, shop, "tight", eligible, now=T0, seed=SEED)
    assert first.winners == tuple(pick_members(SEED, eligible, 2))  # 250 affords two of 100
    assert (first.paid_points, first.seed, first.run_key) == (200, SEED.hex(), "2026-12-01")
    assert await run(run_surprise, shop, "tight", eligible, now=T0) == first  # same day: replay
    later = await run(run_surprise, shop, "tight", eligible, now=T0 + timedelta(days=7))
    assert (later.winners, later.paid_points) == ((), 0)  # 50 left affords no one

    a = await run(run_surprise, shop, "roomy", eligible, now=T0, seed=SEED, key="a")
    b = await run(run_surprise, shop, "roomy", list(reversed(eligible)), now=T0, seed=SEED, key="b")
    assert len(a.winners) == 4 and a.winners == b.winners
    other = await run(run_surprise, shop, "roomy", eligible, now=T0, key="c")
    assert len(other.winners) == 4 and other.seed != SEED.hex()
    assert other.winners == tuple(pick_members(bytes.fromhex(other.seed), eligible, 4))

    issued = -(await run(system_balances, shop))[AccountKind.ISSUED]
    assert issued == 200 + 3 * 40
    assert await available(first.winners[0]) >= 100
    await assert_ledger_intact()
