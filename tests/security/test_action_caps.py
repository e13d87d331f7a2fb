"""Issue 9, item 2: action caps count what was already granted, whatever the order of arrival.

A cap once counted only actions dated strictly before the event's own time: three signups with
one timestamp each paid under `lifetime = 1`, and reviews sent newest first each saw nothing
"before" them under `per_day = 2`. Caps are now counts of the grants in the cap's window
around the event's time (its UTC day, month, year; or ever), under the member's lock.
"""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointguard import db
from pointguard.program.apply import apply_event, apply_events
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
DAY = timedelta(days=1)

PROGRAM = """
name = "Caps"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[[actions]]
event = "signup"
points = 100
description = "Welcome bonus"
lifetime = 1
[[actions]]
event = "review.published"
points = 20
description = "Thanks for your review"
per_day = 2
[[actions]]
event = "social.shared"
points = 5
description = "Thanks for sharing"
per_day = 1
per_month = 3
"""
CAPS = {  # action -> (per_day, per_month, lifetime)
    "signup": (None, None, 1),
    "review.published": (2, None, None),
    "social.shared": (1, 3, None),
}


async def with_program(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - 400 * DAY)
    return merchant


def action(n, name, at, member="ann"):
    return ActionPerformed(event_id=f"e{n}", member_id=member, occurred_at=at, action=name)


async def grants(engine, merchant):
    """(member, action, occurred_at) of every paid action; each is one earn in the ledger."""
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT member_id, action, occurred_at FROM program_actions WHERE merchant_id = $1",
            merchant,
        )
        earns = await pg.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE merchant_id = $1 AND kind = 'earn'",
            merchant,
        )
    assert earns == len(rows), "every action earn is a recorded action"
    return [(r["member_id"], r["action"], r["occurred_at"]) for r in rows]


async def test_three_signups_with_one_timestamp_pay_once(engine, run, merchant):
    await with_program(run, merchant)
    for n in range(3):
        await run(apply_event, merchant, action(n, "signup", T0))
    assert len(await grants(engine, merchant)) == 1


async def test_reviews_sent_newest_first_pay_per_day_cap(engine, run, merchant):
    await with_program(run, merchant)
    for n in range(4):
        await run(apply_event, merchant, action(n, "review.published", T0 + timedelta(hours=3 - n)))
    assert len(await grants(engine, merchant)) == 2


async def test_each_day_counts_its_own_grants_whatever_arrived_first(engine, run, merchant):
    await with_program(run, merchant)
    hour = timedelta(hours=1)
    # the next day fills first; then this day's reviews arrive newest first
    arrived = [T0 + DAY, T0 + DAY, T0 + hour, T0, T0 - hour]
    for n, at in enumerate(arrived):
        await run(apply_event, merchant, action(n, "review.published", at))
    granted = sorted(g[2] for g in await grants(engine, merchant))
    assert granted == [T0, T0 + hour, T0 + DAY, T0 + DAY]


async def test_one_batch_of_one_members_ties_respects_the_cap(engine, run, merchant):
    await with_program(run, merchant)
    await run(apply_events, merchant, [action(n, "signup", T0) for n in range(3)])
    await run(apply_events, merchant, [action(10 + n, "review.published", T0) for n in range(4)])
    assert len(await grants(engine, merchant)) == 3


def within_caps(granted):
    """Every cap holds for every member, action and window."""
    for (member, name), times in _by_member_action(granted).items():
        per_day, per_month, lifetime = CAPS[name]
        days = [t.date() for t in times]
        months = [(t.year, t.month) for t in times]
        if lifetime is not None:
            assert len(times) <= lifetime, (member, name, times)
        if per_day is not None:
            assert max(days.count(d) for d in days) <= per_day, (member, name, times)
        if per_month is not None:
            assert max(months.count(m) for m in months) <= per_month, (member, name, times)


def _by_member_action(granted):
    out: dict[tuple[str, str], list[datetime]] = {}
    for member, name, at in granted:
        out.setdefault((member, name), []).append(at.astimezone(UTC))
    return out


@st.composite
def arrivals(draw):
    """Capped actions on a handful of instants (ties likely), in any order of arrival."""
    instants = draw(
        st.lists(st.integers(0, 40 * 24), min_size=1, max_size=4, unique=True)
    )  # hours after T0: days and months apart, or the same instant
    events = [
        action(
            n,
            draw(st.sampled_from(sorted(CAPS))),
            T0 + timedelta(hours=draw(st.sampled_from(instants))),
            member=draw(st.sampled_from(["ann", "bob"])),
        )
        for n in range(draw(st.integers(1, 14)))
    ]
    return draw(st.permutations(events))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=arrivals(), batch_size=st.integers(1, 6))
async def test_caps_hold_in_any_order_and_batching(engine, run, events, batch_size):
    merchant = await with_program(run, f"caps-{uuid4().hex[:12]}")
    for start in range(0, len(events), batch_size):
        await run(apply_events, merchant, events[start : start + batch_size])
    granted = await grants(engine, merchant)
    within_caps(granted)
    # and a cap is reached, not undershot: each window pays as many as its cap allows
    asked = _by_member_action([(e.member_id, e.action, e.occurred_at) for e in events])
    paid = _by_member_action(granted)
    for key, times in asked.items():
        per_day, per_month, lifetime = CAPS[key[1]]
        if lifetime is not None:
            assert len(paid.get(key, [])) == min(len(times), lifetime)
        elif per_month is None:
            days = {t.date() for t in times}
            for d in days:
                wanted = sum(t.date() == d for t in times)
                got = sum(t.date() == d for t in paid.get(key, []))
                assert got == min(wanted, per_day)
