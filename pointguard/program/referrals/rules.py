"""Referrals, decided: who is referred, what the referee and the referrer earn, and when it all
goes back. Pure: `referrals/records.py` loads and stores, `apply.py` drives.

The rule, stated once:
- Every member can have an unguessable referral code (64 random bits); the link to share is
  the program's `link_pattern` with the code in it, or the storefront builds it. A code
  arrives with the new member's `signup` or first `order.paid`.
- A code attaches the referral once, to a member with no earlier paid order. A member's own
  code is refused outright (`REFUSED_SELF`); an unknown code is ignored.
- The referee gets `referee_points` on signup or on their first order (`referee_reward_on`);
  on an order they wait out its return window like the order's points.
- The referrer gets `referrer_points` for the referee's first paid order if its eligible total
  reaches `min_first_order_minor` (else `TOO_SMALL`) and the referrer has had fewer than
  `max_rewarded_per_month` rewards this calendar month (else `CAPPED`). The reward waits out
  that order's return window (and, once it exists, the fraud guard) before it is available.
  On the Nth successful referral a ladder step pays its bonus too.
- If the first order is fully refunded or cancelled, the referrer's and the referee's order
  rewards go back (`REVERSED`); ladder bonuses already won stay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from urllib.parse import quote

from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import after_return_window, lot_expiry
from pointguard.program.document.schema import Program
from pointguard.program.events import ActionPerformed, OrderPaid
from pointguard.program.intents import EarnIntent, Intent, TakeBackIntent
from pointguard.program.orders.rules import OrderRecord
from pointguard.program.wording import ordinal


class ReferralStatus(StrEnum):
    """Where a referral stands (stored as its value in `program_referrals.status`)."""

    ATTACHED = "attached"  # waiting for the referee's first paid order
    REFUSED_SELF = "refused_self"  # the member came with their own code: never pays
    TOO_SMALL = "too_small"  # the first order was below `min_first_order_minor`
    CAPPED = "capped"  # the referrer had reached `max_rewarded_per_month`
    REWARDED = "rewarded"
    REVERSED = "reversed"  # the rewarded first order was fully returned


@dataclass(frozen=True)
class Referral:
    """A referee's referral, as stored."""

    referee_id: str
    referrer_id: str
    status: ReferralStatus
    referee_rewarded: bool = False
    first_order_id: str | None = None
    rewarded_at: datetime | None = None  # when the referrer was rewarded


@dataclass(frozen=True)
class ReferrerCounts:
    """The referrer's rewarded referrals: this calendar month (for the cap) and ever (ladder)."""

    this_month: int
    successful: int


@dataclass(frozen=True)
class ReferralDecision:
    referral: Referral  # as it stands after the event
    intents: list[Intent]


ReferralEvent = ActionPerformed | OrderPaid


def referee_key(referee_id: str) -> str:
    """The ledger key of the referee's welcome reward."""
    return idempotency_key("referee", referee_id)


def referrer_key(referee_id: str) -> str:
    """The ledger key of the referrer's reward for bringing `referee_id`."""
    return idempotency_key("referrer", referee_id)


def referral_link(program: Program, code: str) -> str | None:
    """The member's referral URL from the program's `link_pattern`; None without one (the
    storefront builds its link from the code)."""
    pattern = None if program.referrals is None else program.referrals.link_pattern
    # A code the storefront registered may hold any character: quoted, it stays one segment.
    return None if pattern is None else pattern.replace("{code}", quote(code, safe=""))


def counts_referrals(program: Program, event: object) -> bool:
    """Whether `event` can do anything for referrals: a signup or a paid order, under a program
    that has them."""
    if program.referrals is None:
        return False
    if isinstance(event, ActionPerformed):
        return event.action == "signup"
    return isinstance(event, OrderPaid)


def decide_attachment(
    event: ReferralEvent, referrer_id: str | None, *, earlier_orders: bool
) -> Referral | None:
    """The referral a code attaches (`referrer_id` is the code's owner, None for an unknown
    code), or None: unknown code, or a member who already bought before (not a new customer)."""
    if referrer_id is None or earlier_orders:
        return None
    status = (
        ReferralStatus.REFUSED_SELF if referrer_id == event.member_id else ReferralStatus.ATTACHED
    )
    return Referral(event.member_id, referrer_id, status)


def referrer_reward_due(
    program: Program, event: ReferralEvent, referral: Referral, eligible_total_minor: int
) -> bool:
    """Whether this event is the referee's first paid order and big enough to reward the
    referrer, so the referrer's counts must be read (under the referrer's lock)."""
    rules = program.referrals
    return (
        rules is not None
        and isinstance(event, OrderPaid)
        and referral.status == ReferralStatus.ATTACHED
        and eligible_total_minor >= rules.min_first_order_minor
    )


def decide_referral(
    program: Program,
    event: ReferralEvent,
    referral: Referral,
    *,
    eligible_total_minor: int = 0,
    referrer: ReferrerCounts | None = None,
) -> ReferralDecision:
    """What a signup or a paid order of the referee does: the referee's welcome, and on the
    first paid order the referrer's reward (`referrer` holds the referrer's counts whenever
    `referrer_reward_due`)."""
    rules = program.referrals
    if rules is None or referral.status == ReferralStatus.REFUSED_SELF:
        return ReferralDecision(referral, [])
    signup = isinstance(event, ActionPerformed)
    release_at = None if signup else after_return_window(program, event.occurred_at)
    intents: list[Intent] = []
    updated = referral
    if (
        not referral.referee_rewarded
        and rules.referee_points
        and ((rules.referee_reward_on == "signup") == signup)
    ):
        updated = replace(updated, referee_rewarded=True)
        intents.append(
            EarnIntent(
                referee_key(referral.referee_id),
                rules.referee_points,
                f"{rules.referee_points} points welcome gift: you joined through a friend",
                "referral:referee",
                release_at,
                lot_expiry(program, release_at or event.occurred_at),
            )
        )
    if isinstance(event, OrderPaid) and referral.status == ReferralStatus.ATTACHED:
        updated = replace(updated, first_order_id=event.order_id)
        if eligible_total_minor < rules.min_first_order_minor:
            updated = replace(updated, status=ReferralStatus.TOO_SMALL)
        else:
            if referrer is None:
                raise ValueError("the referrer's counts are needed: see referrer_reward_due")
            cap = rules.max_rewarded_per_month
            if cap is not None and referrer.this_month >= cap:
                updated = replace(updated, status=ReferralStatus.CAPPED)
            else:
                updated = replace(
                    updated, status=ReferralStatus.REWARDED, rewarded_at=event.occurred_at
                )
                intents += _referrer_earns(program, event, referral, referrer)
    return ReferralDecision(updated, intents)


def _referrer_earns(
    program: Program, order: OrderPaid, referral: Referral, referrer: ReferrerCounts
) -> list[Intent]:
    rules = program.referrals
    assert rules is not None
    release_at = after_return_window(program, order.occurred_at)
    expires_at = lot_expiry(program, release_at)
    earns: list[Intent] = [
        EarnIntent(
            referrer_key(referral.referee_id),
            rules.referrer_points,
            f"{rules.referrer_points} points for referring a friend",
            "referral:referrer",
            release_at,
            expires_at,
            member_id=referral.referrer_id,
        )
    ]
    nth = referrer.successful + 1
    earns += [
        EarnIntent(
            idempotency_key("referral-ladder", referral.referrer_id, step.referrals),
            step.bonus_points,
            f"{step.bonus_points} bonus points for your {ordinal(nth)} successful referral",
            "referral:ladder",
            release_at,
            expires_at,
            member_id=referral.referrer_id,
        )
        for step in rules.ladder
        if step.referrals == nth and step.bonus_points
    ]
    return earns


def may_reverse(program: Program, order: OrderRecord) -> bool:
    """Whether a refund that left `order` so can reverse a referral: the program has referrals
    and the order no longer keeps anything (only a referee's first order then does)."""
    return program.referrals is not None and order.bonuses_returned


def decide_reversal(program: Program, referral: Referral, order: OrderRecord) -> ReferralDecision:
    """Take the rewards back when the referee's first order stops keeping anything: the
    referrer's, if it was rewarded, and the referee's welcome, if the first order won it (also
    when the referrer's reward was capped or the order too small: otherwise buying, collecting
    the welcome and returning everything would keep it)."""
    rules = program.referrals
    if (
        rules is None
        or not may_reverse(program, order)
        or referral.first_order_id != order.order_id
        or referral.status
        not in (ReferralStatus.REWARDED, ReferralStatus.CAPPED, ReferralStatus.TOO_SMALL)
    ):
        return ReferralDecision(referral, [])
    referee = referral.referee_id
    back: list[Intent] = []
    if referral.status == ReferralStatus.REWARDED:
        back.append(
            TakeBackIntent(
                referrer_key(referee),
                idempotency_key("referral-reversed", referrer_key(referee)),
                rules.referrer_points,
                f"{rules.referrer_points} referral points back: your friend's first order was"
                " returned",
                "referral:reversed",
            )
        )
    if rules.referee_reward_on == "first_order" and rules.referee_points:
        back.append(
            TakeBackIntent(
                referee_key(referee),
                idempotency_key("referral-reversed", referee_key(referee)),
                rules.referee_points,
                f"{rules.referee_points} welcome points back: your first order was returned",
                "referral:reversed",
            )
        )
    return ReferralDecision(
        replace(referral, status=ReferralStatus.REVERSED, rewarded_at=None), back
    )
