"""Expiry the program's way: reminders before points expire, and inactivity expiry.

- `lot` mode: each earn's lot expires `expiry.months` after it is released (the ledger's upkeep
  expires it). `inactivity` mode: lots do not expire; instead all of a member's available points
  expire once `expiry.months` have passed since their last order, refund or action. `never`:
  nothing expires.
- For each of `expiry.reminder_days` (e.g. 30 and 7) a member with points due to expire within
  that many days gets one `points.expiring` event per expiry date and lead time, never twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pointguard.db import PgConnection
from pointguard.ledger import expiring_within
from pointguard.ledger import operations as ops
from pointguard.program.outbox import write_events
from pointguard.program.rules import add_months
from pointguard.program.store import program_in_force

MAX_MEMBERS_PER_PASS = 500

# Marks a pass's reminders at once; returns those not sent before.
MARK_REMINDED = """
INSERT INTO program_expiry_reminders (merchant_id, member_id, expires_at, days_before, sent_at)
SELECT $1, u.*, $5::timestamptz
FROM unnest($2::text[], $3::timestamptz[], $4::integer[]) AS u
ON CONFLICT DO NOTHING
RETURNING member_id, expires_at, days_before
"""

# Members with available points whose last program event is on or before $2.
INACTIVE = """
SELECT m.member_id, m.last_activity_at AS last_activity, a.balance_points
FROM program_members m
JOIN ledger_accounts a
  ON a.merchant_id = m.merchant_id AND a.member_id = m.member_id AND a.kind = 'available'
WHERE m.merchant_id = $1 AND m.last_activity_at <= $2 AND a.balance_points > 0
ORDER BY m.last_activity_at LIMIT $3
"""


async def send_expiry_reminders(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Queue `points.expiring` for what expires within each reminder lead; returns how many."""
    program = (await program_in_force(pg, merchant_id, now)).program
    expiry = program.expiry
    due: list[tuple[str, int, datetime, int]] = []  # member, points, expires_at, days before
    for days in sorted(expiry.reminder_days, reverse=True):
        if expiry.mode == "lot":
            for soon in await expiring_within(pg, merchant_id, now=now, days=days):
                due.append((soon.member_id, soon.points, soon.first_expires_at, days))
        elif expiry.mode == "inactivity":
            cutoff = add_months(now + timedelta(days=days), -expiry.months)
            for row in await pg.fetch(INACTIVE, merchant_id, cutoff, MAX_MEMBERS_PER_PASS):
                expires_at = add_months(row["last_activity"], expiry.months)
                due.append((row["member_id"], row["balance_points"], expires_at, days))
    if not due:
        return 0
    # Where each reminder first comes in `due`: the events keep that order.
    order: dict[tuple[str, datetime, int], int] = {}
    for index, (member_id, _, expires_at, days) in enumerate(due):
        order.setdefault((member_id, expires_at, days), index)
    marked = await pg.fetch(
        MARK_REMINDED,
        merchant_id,
        [member_id for member_id, _, _, _ in due],
        [expires_at for _, _, expires_at, _ in due],
        [days for _, _, _, days in due],
        now,
    )
    sent = sorted(order[(r["member_id"], r["expires_at"], r["days_before"])] for r in marked)
    events = [
        (
            "points.expiring",
            {
                "member_id": member_id,
                "points": points,
                "expires_at": expires_at,
                "days_before": days,
            },
        )
        for member_id, points, expires_at, days in (due[index] for index in sent)
    ]
    await write_events(pg, merchant_id, events)
    return len(events)


async def expire_inactive(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """In `inactivity` mode, expire the available points of members inactive for
    `expiry.months`; returns the points expired."""
    program = (await program_in_force(pg, merchant_id, now)).program
    if program.expiry.mode != "inactivity":
        return 0
    cutoff = add_months(now, -program.expiry.months)
    expired = 0
    for row in await pg.fetch(INACTIVE, merchant_id, cutoff, MAX_MEMBERS_PER_PASS):
        entry = await ops.expire_member(
            pg,
            merchant_id,
            row["member_id"],
            key=f"inactive:{row['member_id']}:{row['last_activity'].isoformat()}",
            description=f"Points expired after {program.expiry.months} months without activity",
            source="program.expiry.inactivity",
        )
        if entry is not None and not entry.replayed:
            expired += sum(p.amount_points for p in entry.postings if p.amount_points > 0)
    return expired
