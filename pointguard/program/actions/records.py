"""The program's record of rewarded actions (`program_actions`): what caps count, what the
tier and challenge reviews read, and the birthday a `birthday` action brings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pointguard.db import PgConnection
from pointguard.program.actions.rules import ActionCounts
from pointguard.program.dates import add_months
from pointguard.program.events import ActionPerformed
from pointguard.program.intents import EarnIntent

UPDATE_MEMBER_BIRTHDAY = """
UPDATE program_members SET birthday = $3 WHERE merchant_id = $1 AND member_id = $2
"""

# What the member was already granted of the action in each cap's window around the event's
# own time: [$4, $5) its UTC day, [$6, $7) month, [$8, $9) year, and ever. Every grant counts,
# also one dated later that arrived first, or one dated earlier that arrived later: counted
# under the member's lock (`members.lock_members`), a cap holds whatever the order of arrival.
COUNT_MEMBER_ACTIONS = """
SELECT count(*) FILTER (WHERE occurred_at >= $4 AND occurred_at < $5) AS today,
       count(*) FILTER (WHERE occurred_at >= $6 AND occurred_at < $7) AS this_month,
       count(*) FILTER (WHERE occurred_at >= $8 AND occurred_at < $9) AS this_year,
       count(*) AS lifetime
FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = $3
"""

INSERT_PROGRAM_ACTION = """
INSERT INTO program_actions (merchant_id, event_id, member_id, action, occurred_at, points)
VALUES ($1, $2, $3, $4, $5, $6)
"""


class ActionCountWindows(NamedTuple):
    """`COUNT_MEMBER_ACTIONS`'s parameters, in `$n` order."""

    merchant_id: str
    member_id: str
    action: str
    day_start: datetime
    day_end: datetime
    month_start: datetime
    month_end: datetime
    year_start: datetime
    year_end: datetime


class RewardedAction(NamedTuple):
    """`INSERT_PROGRAM_ACTION`'s parameters, in `$n` order."""

    merchant_id: str
    event_id: str
    member_id: str
    action: str
    occurred_at: datetime
    points: int


async def store_birthday(pg: PgConnection, merchant_id: str, event: ActionPerformed) -> None:
    """Keep the date of birth a `birthday` action brings (later birthday actions read it)."""
    if event.birthday is not None:
        await pg.execute(UPDATE_MEMBER_BIRTHDAY, merchant_id, event.member_id, event.birthday)


async def load_action_counts(
    pg: PgConnection, merchant_id: str, event: ActionPerformed
) -> ActionCounts:
    """How often the member was granted `event`'s action in its day, month, year, and ever."""
    day = event.occurred_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    year = month.replace(month=1)
    windows = ActionCountWindows(
        merchant_id=merchant_id,
        member_id=event.member_id,
        action=event.action,
        day_start=day,
        day_end=day + timedelta(days=1),
        month_start=month,
        month_end=add_months(month, 1),
        year_start=year,
        year_end=year.replace(year=year.year + 1),
    )
    row = await pg.fetchrow(COUNT_MEMBER_ACTIONS, *windows)
    return ActionCounts(row["today"], row["this_month"], row["this_year"], row["lifetime"])


async def store_actions(
    pg: PgConnection, merchant_id: str, event: ActionPerformed, earns: list[EarnIntent]
) -> None:
    """Record the action's earns: what later caps, tier and challenge reviews count."""
    for earn in earns:
        rewarded = RewardedAction(
            merchant_id=merchant_id,
            event_id=event.event_id,
            member_id=event.member_id,
            action=event.action,
            occurred_at=event.occurred_at,
            points=earn.points,
        )
        await pg.execute(INSERT_PROGRAM_ACTION, *rewarded)
