"""Scratch cards: the weighted prize pick, then grants on the real database that never pay past
the campaign's budget, even racing, with the ledger verified intact at the end."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pointguard.errors import ChanceUnavailable
from pointguard.ledger import AccountKind, system_balances
from pointguard.program.chance.prizes import Reason
from pointguard.program.chance.scratch_cards import grant_scratch_card, pick_prize
from pointguard.program.document.schema import ScratchCardPrize
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)

PROGRAM = """
name = "Lucky"
currency = "EUR"
earning = { points_per_major_unit = "1" }

[[chance.scratch_cards]]
id = "flat"
name = "Scratch & win"
granted_on = "order.paid"
budget_points = 1000
prizes = [{ points = 100, weight = 1 }]

[[chance.scratch_cards]]
id = "mixed"
name = "Lucky card"
granted_on = "order.paid"
budget_points = 1000
prizes = [
    { points = 0, weight = 1 },
    { points = 150, weight = 3 },
    { points = 400, weight = 1 },
]
"""


def test_pick_prize_follows_the_cumulative_weights():
    prizes = [ScratchCardPrize(points=0, weight=2), ScratchCardPrize(points=50, weight=1)]
    assert [pick_prize(prizes, roll) for roll in range(3)] == [0, 0, 50]
    with pytest.raises(ValueError):
        pick_prize(prizes, 3)


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(1))
    return merchant


async def test_scratch_cards_never_pay_past_the_budget_under_30_racing_grants(
    run, shop, available, outbox, assert_ledger_intact
):
    async def grant_all(campaign):
        return await asyncio.gather(
            *(
                run(grant_scratch_card, shop, f"m{i}", campaign, key=f"{campaign}:{i}", now=T0)
                for i in range(30)
            )
        )

    flat = await grant_all("flat")
    assert sum(c.paid_points for c in flat) == 1000  # ten cards of 100, then "no win"
    assert sorted(c.paid_points for c in flat) == [0] * 20 + [100] * 10
    assert all(c.prize_points == 100 for c in flat)
    issued_by_flat = -(await run(system_balances, shop))[AccountKind.ISSUED]
    assert issued_by_flat == 1000

    mixed = await grant_all("mixed")
    paid_mixed = sum(c.paid_points for c in mixed)
    assert paid_mixed <= 1000
    assert all(c.paid_points in (0, c.prize_points) for c in mixed)
    issued = -(await run(system_balances, shop))[AccountKind.ISSUED]
    assert issued == 1000 + paid_mixed
    members = sum([await available(f"m{i}") for i in range(30)])
    assert members == issued

    card = mixed[0]
    assert await run(grant_scratch_card, shop, "m0", "mixed", key="mixed:0", now=T0) == card
    with pytest.raises(ChanceUnavailable) as refused:
        await run(grant_scratch_card, shop, "m1", "mixed", key="mixed:0", now=T0)
    assert refused.value.reason == Reason.KEY_REUSED
    with pytest.raises(ChanceUnavailable) as refused:
        await run(grant_scratch_card, shop, "m1", "nope", key="x", now=T0)
    assert refused.value.reason == Reason.UNKNOWN
    assert len(await outbox("scratch_card.granted")) == 60
    await assert_ledger_intact()
