"""The backtest's risk team: simulated reviewers who decide each open case a set time after it
opened, by the stream's labels, through `program.review.review_case` as a human reviewer's
`pointguard fraud clear|confirm` does. Without them a case stays open for ever, and every later
intent of its member is held (`member_under_review`), which no merchant's risk team allows.

Rules this module enforces:
- A case is due once it has been open `review_after` (the team's turnaround); the replay
  decides the due cases at an upkeep boundary, after the upkeep pass, with the boundary as the
  reviewers' clock (never the wall clock), oldest case first, one transaction each.
- A case is abusive if any event it held is labelled abusive: `confirm`, freezing the member and
  voiding what their referrals earned them, as a reviewer does with a confirmed abuser.
  Otherwise it is cleared. A case none of whose held events carries a label stays open: no
  label, no verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.fraud.backtest.stream import Label
from pointguard.fraud.cases import ReviewAction
from pointguard.program.review import review_case

REVIEW_AFTER = timedelta(hours=24)  # the default turnaround from a case's opening
REVIEWER = "backtest"

# The merchant's open cases opened at or before $2, with the events each held.
SELECT_DUE_CASES = """
SELECT c.case_id, array_agg(DISTINCT d.event_id) AS event_ids
FROM fraud_cases c
JOIN fraud_decisions d ON d.merchant_id = c.merchant_id AND d.case_id = c.case_id
                      AND d.decision = 'hold'
WHERE c.merchant_id = $1 AND c.status = 'open' AND c.opened_at <= $2
GROUP BY c.case_id, c.opened_at
ORDER BY c.opened_at, c.case_id
"""


def review_after_of(hours: str) -> timedelta | None:
    """The reviewers' turnaround as a command line gives it: a number of hours, or `none` (or
    0) for no reviewers. `ValueError` for anything else."""
    if hours.strip().lower() == "none":
        return None
    refused = ValueError(f"--review-after must be a number of hours >= 0 or none, not {hours!r}")
    try:
        turnaround_h = float(hours)
    except ValueError:
        raise refused from None
    if not 0 <= turnaround_h < math.inf:
        raise refused
    return timedelta(hours=turnaround_h) if turnaround_h else None


def verdict(event_ids: Iterable[str], labels: Mapping[str, Label]) -> ReviewAction | None:
    """What a reviewer who knows the labels decides on a case that held `event_ids`: confirm if
    any is abusive, clear if all labelled ones are honest, None if none is labelled. Pure."""
    known = [labels[event_id] for event_id in event_ids if event_id in labels]
    if not known:
        return None
    return ReviewAction.CONFIRM if any(label.abusive for label in known) else ReviewAction.CLEAR


async def review_due_cases(
    engine: AsyncEngine,
    merchant_id: str,
    labels: Mapping[str, Label],
    *,
    now: datetime,
    review_after: timedelta,
) -> Counter[ReviewAction]:
    """Decide every case of the merchant open since `now - review_after` or before that a label
    decides (see the module); returns how many were cleared and how many confirmed."""
    async with db.connection(engine) as pg:
        due = await pg.fetch(SELECT_DUE_CASES, merchant_id, now - review_after)
    decided: Counter[ReviewAction] = Counter()
    for row in due:
        action = verdict(row["event_ids"], labels)
        if action is None:
            continue
        confirm = action == ReviewAction.CONFIRM
        await db.run_in_transaction(
            engine,
            review_case,
            merchant_id,
            row["case_id"],
            action,
            reviewer=REVIEWER,
            note="decided by the stream's labels",
            freeze=confirm,
            void_referrals=confirm,
            now=now,
        )
        decided[action] += 1
    return decided
