"""Expiry reminders (once per date and lead) and inactivity expiry."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.ledger import member_balances
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed
from pointguard.program.expiry import expire_inactive, send_expiry_reminders

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 1, 15, 12, tzinfo=UTC)
DAY = timedelta(days=1)

PROGRAM = """
name = "Expiry"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[[actions]]
event = "review.published"
points = 40
description = "Thanks for your review"
[expiry]
mode = "{mode}"
months = 6
reminder_days = [30, 7]
"""


async def setup(run, merchant, mode):
    await run(
        save_program, merchant, parse_program(PROGRAM.format(mode=mode)), effective_from=T0 - DAY
    )
    await run(
        apply_event,
        merchant,
        ActionPerformed(event_id="r1", member_id="ann", occurred_at=T0, action="review.published"),
    )


async def reminders(engine, merchant):
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT payload->>'days_before' AS days, payload->>'points' AS points FROM outbox"
            " WHERE merchant_id = $1 AND event_type = 'points.expiring' ORDER BY outbox_id",
            merchant,
        )
    return [(int(r["days"]), int(r["points"])) for r in rows]


async def test_lot_reminders_come_once_per_lead(engine, run, merchant):
    await setup(run, merchant, "lot")
    expires = datetime(2026, 7, 15, 12, tzinfo=UTC)  # 6 months after the review
    assert await run(send_expiry_reminders, merchant, now=expires - 31 * DAY) == 0
    assert await run(send_expiry_reminders, merchant, now=expires - 30 * DAY) == 1
    assert await run(send_expiry_reminders, merchant, now=expires - 20 * DAY) == 0  # sent
    assert await run(send_expiry_reminders, merchant, now=expires - 7 * DAY) == 1
    assert await reminders(engine, merchant) == [(30, 40), (7, 40)]


async def test_inactive_members_are_reminded_then_expire(engine, run, merchant):
    await setup(run, merchant, "inactivity")
    cutoff = datetime(2026, 7, 15, 12, tzinfo=UTC)  # six months without activity
    assert await run(send_expiry_reminders, merchant, now=cutoff - 7 * DAY) == 2
    assert await run(expire_inactive, merchant, now=cutoff - timedelta(seconds=1)) == 0
    assert await run(expire_inactive, merchant, now=cutoff) == 40
    assert (await run(member_balances, merchant, "ann")).available_points == 0
    assert await run(expire_inactive, merchant, now=cutoff + DAY) == 0


async def test_activity_resets_the_inactivity_clock(run, merchant):
    await setup(run, merchant, "inactivity")
    await run(
        apply_event,
        merchant,
        ActionPerformed(
            event_id="r2", member_id="ann", occurred_at=T0 + 100 * DAY, action="review.published"
        ),
    )
    assert await run(expire_inactive, merchant, now=datetime(2026, 7, 15, 12, tzinfo=UTC)) == 0
    assert (await run(member_balances, merchant, "ann")).available_points == 80
