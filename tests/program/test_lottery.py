"""The lottery: the pure draw rules, then draws end to end on the real database (commitment,
entries, the draw anyone can recompute), with the ledger verified intact at the end."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointguard import db
from pointguard.errors import ChanceUnavailable, InsufficientPoints, SeedMismatch
from pointguard.ledger import AccountKind, member_balances, post_entries, system_balances
from pointguard.ledger import operations as ops
from pointguard.program.chance.lottery import (
    draw_tickets,
    enter_draw,
    number_tickets,
    open_draw,
    pick_winners,
    run_draw,
    seed_hash,
    tickets_digest,
    verify_draw,
)
from pointguard.program.chance.prizes import Reason
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
CLOSE = T0 + timedelta(days=1)
SEED = bytes(range(32))

PROGRAM = f"""
name = "Lucky"
currency = "EUR"
earning = {{ points_per_major_unit = "1" }}

[[chance.lotteries]]
id = "xmas"
name = "Christmas draw"
entry_cost_points = 100
entries_close_at = {CLOSE.isoformat().replace("+00:00", "Z")}
prizes_points = [5000, 1000, 500]
"""


# --- pure rules ------------------------------------------------------------------------------


def test_pick_winners_is_a_documented_pure_function():
    tickets = number_tickets([("ann", 3), ("bob", 2), ("cy", 1)])
    assert tickets == [(1, "ann"), (2, "ann"), (3, "ann"), (4, "bob"), (5, "bob"), (6, "cy")]
    winners = pick_winners(SEED, tickets, [5000, 1000, 500])
    assert pick_winners(SEED, list(reversed(tickets)), [5000, 1000, 500]) == winners

    # The documented rule, redone by hand.
    pool, expected = list(tickets), []
    for index, prize in enumerate([5000, 1000, 500]):
        h = int.from_bytes(hashlib.sha256(SEED + index.to_bytes(4, "big")).digest(), "big")
        member = pool[h % len(pool)][1]
        expected.append((member, prize))
        pool = [t for t in pool if t[1] != member]
    assert winners == expected
    assert sorted(m for m, _ in winners) == ["ann", "bob", "cy"]

    assert pick_winners(SEED, [(1, "ann"), (2, "ann")], [10, 5]) == [("ann", 10)]
    assert pick_winners(SEED, [], [10]) == []
    with pytest.raises(ValueError, match="unique"):
        pick_winners(SEED, [(1, "ann"), (1, "bob")], [10])


@given(
    st.binary(min_size=32, max_size=32),
    st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=40),
    st.lists(st.integers(1, 10_000), min_size=1, max_size=6),
)
def test_each_member_wins_at_most_once_and_every_prize_finds_a_winner_while_members_last(
    seed, holders, prizes
):
    tickets = list(enumerate(holders, start=1))
    winners = pick_winners(seed, tickets, prizes)
    members = [m for m, _ in winners]
    assert len(members) == len(set(members)) == min(len(prizes), len(set(holders)))
    assert [p for _, p in winners] == prizes[: len(winners)]
    assert set(members) <= set(holders)


def test_verify_draw_refuses_a_seed_that_is_not_the_committed_one():
    tickets = [(1, "ann"), (2, "bob")]
    committed = seed_hash(SEED).hex()
    assert verify_draw(SEED.hex(), committed, tickets, [7]) == pick_winners(SEED, tickets, [7])
    assert verify_draw(SEED.hex(), committed.upper(), tickets, [7]) == pick_winners(
        SEED, tickets, [7]
    )
    with pytest.raises(SeedMismatch, match="published"):
        verify_draw(bytes(32).hex(), committed, tickets, [7])
    with pytest.raises(SeedMismatch, match="not hex"):
        verify_draw("zz", committed, tickets, [7])


# --- on the database -------------------------------------------------------------------------


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(1))
    return merchant


async def gifts(run, merchant, **points_by_member):
    """Welcome gifts, available at once, in one ledger batch."""
    entries = [
        ops.earn_entry(merchant, m, p, key=f"gift:{m}", description="Welcome gift", source="test")
        for m, p in points_by_member.items()
    ]
    await run(post_entries, entries)


async def test_lottery_from_commitment_to_a_draw_anyone_can_recompute(
    run, shop, available, outbox, assert_ledger_intact
):
    await gifts(run, shop, ann=1000, bob=1000, cy=150)
    with pytest.raises(ChanceUnavailable) as refused:
        await run(enter_draw, shop, "ann", "xmas", 1, key="early", now=T0)
    assert refused.value.reason == Reason.NOT_OPEN

    opened = await run(open_draw, shop, "xmas", T0)
    assert (opened.entry_cost_points, opened.prizes_points) == (100, (5000, 1000, 500))
    assert await run(open_draw, shop, "xmas", T0 + timedelta(hours=1)) == opened  # seed kept
    [published] = await outbox("lottery.opened")
    assert published["seed_hash"] == opened.seed_hash

    ann = await run(enter_draw, shop, "ann", "xmas", 3, key="ann-1", now=T0)
    assert (ann.entries, ann.points) == (3, 300)
    assert await run(enter_draw, shop, "ann", "xmas", 3, key="ann-1", now=T0) == ann  # retried
    await run(enter_draw, shop, "bob", "xmas", 2, key="bob-1", now=T0)
    await run(enter_draw, shop, "cy", "xmas", 1, key="cy-1", now=T0)
    with pytest.raises(InsufficientPoints):
        await run(enter_draw, shop, "cy", "xmas", 1, key="cy-2", now=T0)
    with pytest.raises(ChanceUnavailable) as refused:
        await run(enter_draw, shop, "bob", "xmas", 1, key="ann-1", now=T0)
    assert refused.value.reason == Reason.KEY_REUSED
    assert [await available(m) for m in ("ann", "bob", "cy")] == [700, 800, 50]
    spent = await run(system_balances, shop)
    assert spent[AccountKind.REDEEMED] == 600
    assert (await run(member_balances, shop, "ann")).reserved_points == 0

    with pytest.raises(ChanceUnavailable) as refused:
        await run(run_draw, shop, "xmas", CLOSE - timedelta(seconds=1))
    assert refused.value.reason == Reason.NOT_CLOSED
    with pytest.raises(ChanceUnavailable) as refused:
        await run(enter_draw, shop, "bob", "xmas", 1, key="late", now=CLOSE)
    assert refused.value.reason == Reason.CLOSED

    result = await run(run_draw, shop, "xmas", CLOSE)
    assert hashlib.sha256(bytes.fromhex(result.seed)).hexdigest() == published["seed_hash"]
    tickets = await run(draw_tickets, shop, "xmas")
    assert len(tickets) == result.ticket_count == 6
    assert tickets_digest(tickets).hex() == result.tickets_sha256
    recomputed = verify_draw(result.seed, published["seed_hash"], tickets, [5000, 1000, 500])
    assert recomputed == [(w.member_id, w.points) for w in result.winners]
    assert sorted(w.member_id for w in result.winners) == ["ann", "bob", "cy"]
    [drawn] = await outbox("lottery.drawn")
    assert (drawn["seed"], drawn["winners"][0]["member_id"]) == (
        result.seed,
        result.winners[0].member_id,
    )

    again = await run(run_draw, shop, "xmas", CLOSE + timedelta(days=1))
    assert again == result
    won = {w.member_id: w.points for w in result.winners}
    assert [await available(m) for m in ("ann", "bob", "cy")] == [
        700 + won["ann"],
        800 + won["bob"],
        50 + won["cy"],
    ]
    issued = -(await run(system_balances, shop))[AccountKind.ISSUED]
    assert issued == 2150 + 6500  # welcome gifts plus the prizes, paid once
    assert len(await outbox("lottery.drawn")) == 1
    with pytest.raises(ChanceUnavailable) as refused:
        await run(open_draw, shop, "nope", T0)
    assert refused.value.reason == Reason.UNKNOWN
    await assert_ledger_intact()


async def test_a_draw_cannot_open_after_its_entries_closed_and_may_draw_no_one(run, shop):
    with pytest.raises(ChanceUnavailable) as refused:
        await run(open_draw, shop, "xmas", CLOSE)
    assert refused.value.reason == Reason.CLOSED
    await run(open_draw, shop, "xmas", T0)
    result = await run(run_draw, shop, "xmas", CLOSE)
    assert (result.ticket_count, result.winners) == (0, ())


async def test_a_draw_waits_for_an_entry_in_flight_and_counts_its_tickets(engine, run, shop):
    await gifts(run, shop, ann=500)
    await run(open_draw, shop, "xmas", T0)
    async with db.connection(engine) as pg:
        entering = pg.transaction()
        await entering.start()
        await enter_draw(pg, shop, "ann", "xmas", 2, key="slow", now=CLOSE - timedelta(seconds=1))
        drawing = asyncio.create_task(run(run_draw, shop, "xmas", CLOSE))
        await asyncio.sleep(0.2)
        assert not drawing.done()  # held by the entry's lock on the draw
        await entering.commit()
    result = await drawing
    assert (result.ticket_count, [w.member_id for w in result.winners]) == (2, ["ann"])
