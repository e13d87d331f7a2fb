"""What the guard knows of a reward-bearing intent when it decides: one fixed schema, with a
version stored beside every decision, so that a decision can be explained and replayed. Pure:
`history.py` loads the values. Structs, not dataclasses: a hundred are built and encoded per
batch, and `msgspec` encodes them as the stored JSON directly."""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import Struct

from pointguard.fraud.identity import LinkKind

FEATURE_SCHEMA = 1


class MemberHistory(Struct, frozen=True, kw_only=True):
    """A member's recent activity, up to the event being decided (from the program's record of
    applied events)."""

    first_seen_at: datetime | None = None
    orders_1h: int = 0
    orders_24h: int = 0
    orders_30d: int = 0
    refunds_30d: int = 0  # refunds and cancellations
    orders_in_return_window: int = 0  # orders paid within the program's return window
    refunded_in_return_window: int = 0  # of those, how many were refunded or cancelled since
    referrals_24h: int = 0  # referrals rewarded to this member as the referrer
    referrals_7d: int = 0
    referrals_30d: int = 0


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
