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
from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import add_months
from pointguard.program.document.versions import program_in_force
from pointguard.program.outbox import write_events

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
SELECT_INACTIVE_MEMBERS = """
SELECT m.member_id, m.last_activity_at AS last_activity, a.balance_points
FROM program_members m
JOIN ledger_accounts a
  ON a.merchant_id = m.merchant_id AND a.member_id = m.member_id AND a.kind = 'available'
WHERE m.merchant_id = $1 AND m.last_activity_at <= $2 AND a.balance_points > 0
ORDER BY m.last_activity_at LIMIT $3
"""

# The due probes of the two jobs below, for the upkeep (see
# `ledger.operations.HAS_DUE_RELEASES`). They read the expiry settings of the program in force
# at `now` (the version `store.IN_FORCE_AT` picks); a stored document is the whole encoded
# program (`save_program`), so each setting is there.
SELECT_EXPIRY_IN_FORCE = """
    SELECT v.document->'expiry' AS expiry FROM program_versions v
    WHERE v.merchant_id = upkeep.merchant_id AND v.effective_from <= upkeep.now
    ORDER BY v.effective_from DESC, v.version DESC LIMIT 1"""


def _add_months(moment: str, months: str) -> str:
    """SQL for `rules.add_months` (PostgreSQL keeps the day or takes the month's last, too),
    on the calendar in UTC, the clock's: the session's time zone must not shift a day."""
    return (
        f"((({moment}) AT TIME ZONE 'UTC') + make_interval(months => {months})) AT TIME ZONE 'UTC'"
    )


_MONTHS = "(p.expiry->>'months')::integer"
_LEAD = "reminder.days::integer * interval '24 hours'"  # as timedelta(days=...): DST or not


def _has_inactive_member(cutoff: str, *, also: str = "true") -> str:
    """SQL: has the merchant a member `SELECT_INACTIVE_MEMBERS` would find for `cutoff`, for
    whom `also` holds?"""
    return f"""EXISTS (
        SELECT 1 FROM program_members pm
        JOIN ledger_accounts a ON a.merchant_id = pm.merchant_id
            AND a.member_id = pm.member_id AND a.kind = 'available'
        WHERE pm.merchant_id = upkeep.merchant_id AND pm.last_activity_at <= {cutoff}
          AND a.balance_points > 0 AND {also})"""


def _reminded(member_id: str, expires_at: str) -> str:
    """SQL: was the member reminded of `expires_at`, `reminder.days` before?"""
    return f"""EXISTS (
        SELECT 1 FROM program_expiry_reminders r
        WHERE r.merchant_id = upkeep.merchant_id AND r.member_id = {member_id}
          AND r.expires_at = {expires_at} AND r.days_before = reminder.days::integer)"""


# A lot reminder names the member's first expiry within the lead (`EXPIRING`), so a lot with
# an earlier one is not due a reminder of its own.
HAS_EXPIRY_UNREMINDED = f"""EXISTS (
    SELECT 1 FROM ledger_lots l
    WHERE l.merchant_id = upkeep.merchant_id AND l.available_points > 0
      AND l.expires_at <= upkeep.now + {_LEAD}
      AND NOT EXISTS (
          SELECT 1 FROM ledger_lots f
          WHERE f.merchant_id = l.merchant_id AND f.member_id = l.member_id
            AND f.available_points > 0 AND f.expires_at < l.expires_at)
      AND NOT {_reminded("l.member_id", "l.expires_at")})"""

HAS_INACTIVITY_UNREMINDED = _has_inactive_member(
    _add_months(f"upkeep.now + {_LEAD}", f"-{_MONTHS}"),
    also=f"NOT {_reminded('pm.member_id', _add_months('pm.last_activity_at', _MONTHS))}",
)

HAS_DUE_REMINDERS = f"""EXISTS (
    SELECT 1 FROM ({SELECT_EXPIRY_IN_FORCE}) p,
        jsonb_array_elements_text(p.expiry->'reminder_days') AS reminder(days)
    WHERE CASE p.expiry->>'mode'
        WHEN 'lot' THEN {HAS_EXPIRY_UNREMINDED}
        WHEN 'inactivity' THEN {HAS_INACTIVITY_UNREMINDED}
        ELSE false END)"""

HAS_DUE_INACTIVITY_EXPIRY = f"""EXISTS (
    SELECT 1 FROM ({SELECT_EXPIRY_IN_FORCE}) p
    WHERE p.expiry->>'mode' = 'inactivity'
      AND {_has_inactive_member(_add_months("upkeep.now", f"-{_MONTHS}"))})"""


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
            for row in await pg.fetch(
                SELECT_INACTIVE_MEMBERS, merchant_id, cutoff, MAX_MEMBERS_PER_PASS
            ):
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
    for row in await pg.fetch(SELECT_INACTIVE_MEMBERS, merchant_id, cutoff, MAX_MEMBERS_PER_PASS):
        entry = await ops.expire_member(
            pg,
            merchant_id,
            row["member_id"],
            key=idempotency_key("inactive", row["member_id"], row["last_activity"].isoformat()),
            description=f"Points expired after {program.expiry.months} months without activity",
            source="program.expiry.inactivity",
        )
        if entry is not None and not entry.replayed:
            expired += sum(p.amount_points for p in entry.postings if p.amount_points > 0)
    return expired
