"""The hard rules from plain values: each fires on a minimal scenario and not on its honest
twin."""

import pytest
from msgspec.structs import replace

from pointguard.fraud.features import IntentFeatures, MemberHistory
from pointguard.fraud.identity import LinkKind
from pointguard.fraud.policy import GuardPolicy
from pointguard.fraud.rules import Verdict, decide_intent

POLICY = GuardPolicy()
ORDER = IntentFeatures(
    source="earning:order", points=100, account_age_days=30, history=MemberHistory()
)
REFERRAL = replace(ORDER, source="referral:referrer")
REVIEW = replace(ORDER, source="action:review.published", points=25)


def shared(*kinds: LinkKind) -> frozenset[LinkKind]:
    return frozenset(kinds)


CASES = [
    # (id, abusive features, honest twin, the rule)
    (
        "self-referral-card",
        replace(REFERRAL, referral_shared=shared(LinkKind.CARD, LinkKind.IP_PREFIX)),
        replace(REFERRAL, referral_shared=shared(LinkKind.IP_PREFIX)),  # household: IP only
        "self_referral",
    ),
    (
        "self-referral-device",
        replace(REFERRAL, referral_shared=shared(LinkKind.DEVICE)),
        replace(REFERRAL, referral_shared=shared(LinkKind.ADDRESS, LinkKind.IP_PREFIX)),
        "self_referral",
    ),
    (
        "same-person-email",
        replace(REFERRAL, referral_shared=shared(LinkKind.EMAIL)),
        REFERRAL,
        "referral_same_person",
    ),
    (
        "review-without-order",
        replace(REVIEW, history=MemberHistory(has_paid_order=False)),
        replace(REVIEW, history=MemberHistory(has_paid_order=True)),
        "review_without_order",
    ),
    (
        "new-account-order-burst",
        replace(
            ORDER,
            account_age_days=POLICY.new_account_days - 1,
            history=MemberHistory(orders_24h=POLICY.max_new_account_orders_per_day + 1),
        ),
        replace(  # the same day's orders on an account past its first week: a regular
            ORDER,
            account_age_days=POLICY.new_account_days + 1,
            history=MemberHistory(orders_24h=POLICY.max_new_account_orders_per_day + 1),
        ),
        "new_account_order_burst",
    ),
    (
        "disposable-referral",
        replace(REFERRAL, referee_disposable_email=True),
        REFERRAL,
        "disposable_referral",
    ),
    (
        "disposable-email",
        replace(ORDER, disposable_email=True),
        replace(ORDER, sharing={LinkKind.EMAIL: 0}),  # an ordinary inbox
        "disposable_email",
    ),
    (
        "referral-velocity",
        replace(REFERRAL, history=MemberHistory(referrals_24h=POLICY.max_referrals_per_day + 1)),
        replace(REFERRAL, history=MemberHistory(referrals_24h=POLICY.max_referrals_per_day)),
        "referral_velocity",
    ),
    (
        "shared-card",
        replace(ORDER, sharing={LinkKind.CARD: POLICY.max_members_per_card}),
        replace(ORDER, sharing={LinkKind.CARD: POLICY.max_members_per_card - 1}),
        "shared_card",
    ),
    (
        "shared-device",
        replace(ORDER, sharing={LinkKind.DEVICE: POLICY.max_members_per_device}),
        replace(ORDER, sharing={LinkKind.DEVICE: 1, LinkKind.IP_PREFIX: 40}),
        "shared_device",
    ),
    (
        "orders-per-hour",
        replace(ORDER, history=MemberHistory(orders_1h=POLICY.max_orders_per_hour + 1)),
        replace(ORDER, history=MemberHistory(orders_1h=POLICY.max_orders_per_hour)),
        "order_velocity",
    ),
    (
        "orders-per-day",
        replace(ORDER, history=MemberHistory(orders_24h=POLICY.max_orders_per_day + 1)),
        replace(ORDER, history=MemberHistory(orders_24h=POLICY.max_orders_per_day)),
        "order_velocity",
    ),
    (
        "refund-farming",
        replace(
            ORDER, history=MemberHistory(orders_in_return_window=5, refunded_in_return_window=4)
        ),
        replace(
            ORDER, history=MemberHistory(orders_in_return_window=5, refunded_in_return_window=3)
        ),
        "refund_farming",
    ),
    (
        "refund-farming-needs-enough-orders",
        replace(
            ORDER, history=MemberHistory(orders_in_return_window=3, refunded_in_return_window=3)
        ),
        replace(
            ORDER, history=MemberHistory(orders_in_return_window=2, refunded_in_return_window=2)
        ),
        "refund_farming",
    ),
    (
        "reviews-per-day",
        replace(
            REVIEW,
            history=MemberHistory(has_paid_order=True, reviews_24h=POLICY.max_reviews_per_day + 1),
        ),
        replace(
            REVIEW,
            history=MemberHistory(has_paid_order=True, reviews_24h=POLICY.max_reviews_per_day),
        ),
        "review_velocity",
    ),
    ("open-case", replace(ORDER, open_case=True), ORDER, "member_under_review"),
    ("frozen", replace(ORDER, frozen=True), ORDER, "member_frozen"),
]


@pytest.mark.parametrize(
    ("abusive", "honest", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_fires_and_not_on_its_honest_twin(
    abusive: IntentFeatures, honest: IntentFeatures, rule: str
) -> None:
    held = decide_intent(POLICY, abusive)
    assert (held.verdict, held.decided_by) == (Verdict.HOLD, rule)
    assert held.score == 1.0 and held.reasons
    cleared = decide_intent(POLICY, honest)
    assert (cleared.verdict, cleared.decided_by, cleared.reasons) == (Verdict.CLEAR, "rules", ())


def test_order_rules_do_not_hold_referral_rewards_and_back() -> None:
    fast = MemberHistory(orders_1h=50)
    assert decide_intent(POLICY, replace(REFERRAL, history=fast)).verdict == Verdict.CLEAR
    card = shared(LinkKind.CARD)
    assert decide_intent(POLICY, replace(ORDER, referral_shared=card)).verdict == Verdict.CLEAR
    reviews = MemberHistory(reviews_24h=50)
    assert decide_intent(POLICY, replace(ORDER, history=reviews)).verdict == Verdict.CLEAR


def test_reasons_are_words_and_at_most_three() -> None:
    everything = replace(
        REFERRAL,
        referral_shared=shared(LinkKind.CARD, LinkKind.EMAIL),
        sharing={LinkKind.CARD: 7, LinkKind.DEVICE: 9},
        open_case=True,
    )
    decision = decide_intent(POLICY, everything)
    assert decision.decided_by == "member_under_review"
    assert decision.reasons == (
        "this member has an open review case",
        "the referrer and the referee share a payment card",
        "the referrer and the referee share an email inbox",
    )
    cards = decide_intent(POLICY, replace(ORDER, sharing={LinkKind.CARD: 4}))
    assert cards.reasons == ("4 other members pay with this card",)


def test_a_disabled_guard_clears_but_says_what_it_saw() -> None:
    decision = decide_intent(GuardPolicy(enabled=False), replace(ORDER, open_case=True))
    assert (decision.verdict, decision.decided_by) == (Verdict.CLEAR, "guard_disabled")
    assert decision.reasons == ("this member has an open review case",)
