"""The guard's hard rules: what always holds, whatever a model would say. Pure.

Each rule names itself and says why in words a reviewer reads ("4 other members pay with this
card"). A rule that fires holds the intent: its points are earned pending and stay pending,
whatever the return window says, until a reviewer clears them.

- `member_under_review` / `member_frozen`: an open case, or a member a reviewer froze.
- `self_referral`: the referrer and the referee share a payment card or a device.
- `referral_same_person`: they share an email inbox or a phone number.
- `disposable_referral`: the referee signed up with an email at a throwaway-inbox provider
  (`hold_disposable_emails`).
- `disposable_email`: any earn of a member who gave an email at a throwaway-inbox provider
  (`hold_disposable_emails`): farms sign their accounts up on them.
- `referral_velocity`: the referrer was rewarded for more than `max_referrals_per_day` referrals
  in 24 hours.
- `shared_card` / `shared_device`: more members than the program allows pay with one card or
  use one device (rings of accounts).
- `review_without_order`: a review bonus for a member who never paid an order
  (`hold_reviews_without_orders`): review farms write reviews without buying.
- `new_account_order_burst`: an account younger than `new_account_days` with more than
  `max_new_account_orders_per_day` orders in 24 hours (orders split to reach thresholds).
- `order_velocity`: more orders than `max_orders_per_hour` in an hour or `max_orders_per_day`
  in a day.
- `refund_farming`: more than `max_refunded_percent` of the orders paid within the return
  window were refunded or cancelled (once there are `min_orders_for_refund_rule` of them).
- `review_velocity`: a review bonus when the program rewarded the member more than
  `max_reviews_per_day` reviews in 24 hours (a program's daily cap counts a calendar day: a
  burst across midnight earns twice it).

Shared IP networks and shipping addresses never hold on their own: households, offices and
mobile carriers share them honestly. They are features for the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pointguard.fraud.features import IntentFeatures
from pointguard.fraud.identity import LinkKind
from pointguard.fraud.policy import GuardPolicy

HOLD_SCORE = 1.0
REVIEW_SOURCE = "action:review.published"
CLEAR_SCORE = 0.0
RULES_CLEARED = "rules"  # `decided_by` of a decision no hard rule fired on
GUARD_DISABLED = "guard_disabled"  # `decided_by` of what a disabled guard would have held


class Verdict(StrEnum):
    CLEAR = "clear"
    HOLD = "hold"


@dataclass(frozen=True)
class GuardDecision:
    verdict: Verdict
    score: float
    decided_by: str  # the rule that held, or RULES_CLEARED when none did
    reasons: tuple[str, ...]  # the top three, in words

    @property
    def held(self) -> bool:
        return self.verdict == Verdict.HOLD


def decide_intent(guard: GuardPolicy, features: IntentFeatures) -> GuardDecision:
    """`hold` if any hard rule fires (the first one decides; up to three reasons are kept),
    else `clear`. A program with the guard disabled clears everything, keeping the reasons."""
    fired = _fired(guard, features)
    reasons = tuple(reason for _, reason in fired[:3])
    if not fired:
        return GuardDecision(Verdict.CLEAR, CLEAR_SCORE, RULES_CLEARED, reasons)
    if not guard.enabled:
        return GuardDecision(Verdict.CLEAR, CLEAR_SCORE, GUARD_DISABLED, reasons)
    return GuardDecision(Verdict.HOLD, HOLD_SCORE, fired[0][0], reasons)


def _fired(guard: GuardPolicy, f: IntentFeatures) -> list[tuple[str, str]]:
    history, fired = f.history, []
    if f.frozen:
        fired.append(("member_frozen", "a reviewer froze this member"))
    if f.open_case:
        fired.append(("member_under_review", "this member has an open review case"))
    if f.is_referral:
        hard = sorted(f.referral_shared & {LinkKind.CARD, LinkKind.DEVICE})
        if hard:
            what = " and ".join(_NAMES[kind] for kind in hard)
            fired.append(("self_referral", f"the referrer and the referee share {what}"))
        same_person = sorted(f.referral_shared & {LinkKind.EMAIL, LinkKind.PHONE})
        if same_person:
            what = " and ".join(_NAMES[kind] for kind in same_person)
            fired.append(("referral_same_person", f"the referrer and the referee share {what}"))
        if f.referee_disposable_email and guard.hold_disposable_emails:
            fired.append(
                ("disposable_referral", "the referee signed up with a throwaway email address")
            )
        if history.referrals_24h > guard.max_referrals_per_day:
            fired.append(
                (
                    "referral_velocity",
                    f"{history.referrals_24h} referrals rewarded in 24 hours"
                    f" (more than {guard.max_referrals_per_day})",
                )
            )
    if f.disposable_email and guard.hold_disposable_emails:
        fired.append(("disposable_email", "this member signed up with a throwaway email address"))
    cards = f.sharing.get(LinkKind.CARD, 0)
    if cards + 1 > guard.max_members_per_card:
        fired.append(("shared_card", f"{cards} other members pay with this card"))
    devices = f.sharing.get(LinkKind.DEVICE, 0)
    if devices + 1 > guard.max_members_per_device:
        fired.append(("shared_device", f"{devices} other members use this device"))
    if (
        f.source == REVIEW_SOURCE
        and guard.hold_reviews_without_orders
        and not history.has_paid_order
    ):
        fired.append(("review_without_order", "a review by a member who never paid an order"))
    if f.is_order:
        if (
            f.account_age_days < guard.new_account_days
            and history.orders_24h > guard.max_new_account_orders_per_day
        ):
            fired.append(
                (
                    "new_account_order_burst",
                    f"{history.orders_24h} orders in 24 hours on an account"
                    f" {f.account_age_days:.1f} days old",
                )
            )
        if history.orders_1h > guard.max_orders_per_hour:
            fired.append(("order_velocity", f"{history.orders_1h} orders in one hour"))
        elif history.orders_24h > guard.max_orders_per_day:
            fired.append(("order_velocity", f"{history.orders_24h} orders in 24 hours"))
        paid, refunded = history.orders_in_return_window, history.refunded_in_return_window
        if (
            paid >= guard.min_orders_for_refund_rule
            and refunded * 100 > guard.max_refunded_percent * paid
        ):
            fired.append(
                (
                    "refund_farming",
                    f"{refunded} of {paid} recent orders refunded"
                    f" (more than {guard.max_refunded_percent}%)",
                )
            )
    if f.source == REVIEW_SOURCE and history.reviews_24h > guard.max_reviews_per_day:
        fired.append(
            (
                "review_velocity",
                f"{history.reviews_24h} reviews rewarded in 24 hours"
                f" (more than {guard.max_reviews_per_day})",
            )
        )
    return fired


_NAMES = {
    LinkKind.CARD: "a payment card",
    LinkKind.DEVICE: "a device",
    LinkKind.EMAIL: "an email inbox",
    LinkKind.PHONE: "a phone number",
}
