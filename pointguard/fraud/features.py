"""What the guard knows of a reward-bearing intent when it decides: one fixed schema, with a
version stored beside every decision, so that a decision can be explained and replayed. Pure:
`history.py` loads the values. Structs, not dataclasses: a hundred are built and encoded per
batch, and `msgspec` encodes them as the stored JSON directly.

Every feature is a plain int, float or bool (the model reads every such field as an input).
A duration that does not apply or is not known (no refund, not referred) is `NOT_APPLICABLE`,
-1: never a real value of a duration or a ratio."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec
from msgspec import Struct

from pointguard.fraud.identity import LinkKind

FEATURE_SCHEMA = 4
NOT_APPLICABLE = -1.0
SECONDS_PER_HOUR = 3_600
# An identifier first seen for a member this recently, on an account at least this old, is
# "new on an old account": the shape of an account taken over, or lent to a ring.
NEW_IDENTIFIER_WINDOW = timedelta(days=1)
OLD_ACCOUNT_DAYS = 30
NEW_ON_OLD_ACCOUNT_KINDS = frozenset({LinkKind.DEVICE, LinkKind.ADDRESS})


class MemberHistory(Struct, frozen=True, kw_only=True):
    """A member's recent activity, up to the event being decided (from the program's record of
    applied events)."""

    first_seen_at: datetime | None = None
    has_paid_order: bool = False  # ever, up to the event
    orders_1h: int = 0
    orders_24h: int = 0
    orders_30d: int = 0
    refunds_30d: int = 0  # refunds and cancellations
    orders_in_return_window: int = 0  # orders paid within the program's return window
    refunded_in_return_window: int = 0  # of those, how many were refunded or cancelled since
    referrals_24h: int = 0  # referrals rewarded to this member as the referrer
    referrals_7d: int = 0
    referrals_30d: int = 0
    refunded_share_in_return_window: float = 0.0  # refunded_in_return_window / orders in it
    # From the member's latest paid order, refunded or cancelled since, to their latest refund
    # or cancellation within the return window (the program does not record which order a
    # refund was of, so the latest earlier refunded order stands for it).
    hours_to_last_refund: float = NOT_APPLICABLE
    reviews_24h: int = 0  # review.published actions the program rewarded in 24 hours
    decided_points_24h: int = 0  # points of the guard's decisions in 24 hours before the round


class IntentFeatures(Struct, frozen=True, kw_only=True):
    """Everything the rules (and, later, the model) read about one intent."""

    source: str  # what earns: "earning:order", "referral:referrer", "action:review.published"
    points: int
    account_age_days: float
    history: MemberHistory
    sharing: dict[LinkKind, int] = {}  # other members per kind of identifier
    referral_shared: frozenset[LinkKind] = frozenset()  # referrer and referee share these
    open_case: bool = False
    frozen: bool = False
    points_24h: int = 0  # what the earner earned in 24 hours, this intent included
    points_24h_over_median: float = 0.0  # against the merchant's running median of points_24h
    # The event's member as a referee: hours from their first event to the first paid order
    # that counted for the referral, and that order's eligible value over the program's
    # `min_first_order_minor` (NOT_APPLICABLE when not referred, no such order or no minimum).
    referee_hours_to_first_order: float = NOT_APPLICABLE
    first_order_over_minimum: float = NOT_APPLICABLE
    new_device_on_old_account: bool = False
    new_address_on_old_account: bool = False
    component_members: int = 1  # members joined to the earner by cards, devices, addresses
    disposable_email: bool = False  # the earner gave an email at a throwaway-inbox provider
    referee_disposable_email: bool = False  # for a referral reward: the referee did

    @property
    def is_referral(self) -> bool:
        return self.source.startswith("referral:")

    @property
    def is_order(self) -> bool:
        return self.source.startswith(("earning:", "promotion:"))

    def to_json(self) -> str:
        """The features as stored with the decision (shared kinds sorted: one spelling)."""
        stored = msgspec.structs.replace(self, referral_shared=frozenset())
        record = msgspec.to_builtins(stored)
        record["referral_shared"] = sorted(kind.value for kind in self.referral_shared)
        return msgspec.json.encode(record).decode()


def hours_between(start: datetime | None, end: datetime | None) -> float:
    """Hours from `start` to `end`, or NOT_APPLICABLE if either is unknown."""
    if start is None or end is None:
        return NOT_APPLICABLE
    return (end - start).total_seconds() / SECONDS_PER_HOUR


def new_on_old_account(first_seen: datetime | None, at: datetime, account_age_days: float) -> bool:
    """Whether an identifier first seen for the member at `first_seen` is new (within
    `NEW_IDENTIFIER_WINDOW` of `at`) on an account older than `OLD_ACCOUNT_DAYS`."""
    return (
        first_seen is not None
        and first_seen > at - NEW_IDENTIFIER_WINDOW
        and account_age_days > OLD_ACCOUNT_DAYS
    )


def points_in_round(
    rewards: Iterable[tuple[str, datetime, int]],
) -> dict[tuple[str, datetime], int]:
    """For each (earner, at) of a round's (earner, at, points) rewards, the points of the
    round's rewards to that earner at or before `at`: what the recorded decisions do not hold
    yet when the round is decided."""
    by_earner: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for earner, at, points in rewards:
        by_earner[earner][at] += points
    totals = {}
    for earner, points_at in by_earner.items():
        running = 0
        for at in sorted(points_at):
            running += points_at[at]
            totals[(earner, at)] = running
    return totals
