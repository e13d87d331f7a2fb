"""Calendar arithmetic the rules share: months that end early, when an order's points are
released, when a lot expires. Pure; every instant is in UTC."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from pointguard.program.document.schema import Program


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later, or the month's last day where it is shorter."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def lot_expiry(program: Program, earned_at: datetime) -> datetime | None:
    if program.expiry.mode != "lot":
        return None
    return add_months(earned_at, program.expiry.months)


def after_return_window(program: Program, at: datetime) -> datetime:
    """When points won by an order at `at` are released: once its return window has passed."""
    return at + timedelta(days=program.return_window_days)
