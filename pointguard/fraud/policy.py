"""The guard's policy, a section of the merchant's program document (`[guard]`): the limits of
its hard rules (`rules.py`). Held points stay pending until a reviewer clears them."""

from __future__ import annotations

from msgspec import Struct


class GuardPolicy(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """`enabled = false` clears every intent (the decisions and their reasons are still
    recorded, so a merchant can watch what the guard would do before switching it on)."""

    enabled: bool = True
    max_orders_per_hour: int = 5
    max_orders_per_day: int = 15
    max_refunded_percent: int = 60  # of the orders paid within the return window
    min_orders_for_refund_rule: int = 3
    max_referrals_per_day: int = 5  # a referrer's rewarded referrals in 24 hours
    max_members_per_card: int = 3  # members paying with one card
    max_members_per_device: int = 4  # members on one device
    # Earns of members on throwaway inboxes, and referral rewards of referees on them.
    hold_disposable_emails: bool = True
    hold_reviews_without_orders: bool = True  # review bonuses of members who never paid an order
    new_account_days: int = 7  # an account this young ...
    max_new_account_orders_per_day: int = 4  # ... holds its orders beyond this many in 24 hours
    max_reviews_per_day: int = 5  # reviews the program rewarded a member in 24 hours
    # A checkout by a member sharing a card or device with a member under review, frozen or
    # confirmed abusive is refused, and the member's case opened (a ring cashing out through
    # its cleanest account).
    hold_redemptions_linked_to_flagged: bool = True
    # The model (`model.py`): the share of the intents it sees that it may hold (the reviewers'
    # capacity), and how many it must see before it holds any (the rules alone decide before).
    model: bool = True  # false: the rules alone decide; the model neither scores nor learns
    model_alert_percent: float = 1.0
    model_warmup: int = 500
