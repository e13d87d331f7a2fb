"""What the guard knows of a reward-bearing intent when it decides: one fixed schema, with a
version stored beside every decision, so that a decision can be explained and replayed. Pure:
`history.py` loads the values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pointguard.fraud.identity import LinkKind

FEATURE_SCHEMA = 1


@dataclass(frozen=True)
class MemberHistory:
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


@dataclass(frozen=True)
class IntentFeatures:
    """Everything the rules (and, later, the model) read about one intent."""

    source: str  # what earns: "earning:order", "referral:referrer", "action:review.published"
    points: int
    account_age_days: float
    history: MemberHistory
    sharing: Mapping[LinkKind, int] = field(default_factory=dict)  # other members per kind
    referral_shared: frozenset[LinkKind] = frozenset()  # referrer and referee share these
    open_case: bool = False
    frozen: bool = False

    @property
    def is_referral(self) -> bool:
        return self.source.startswith("referral:")

    @property
    def is_order(self) -> bool:
        return self.source.startswith(("earning:", "promotion:"))

    def to_record(self) -> dict[str, object]:
        """The features as stored with the decision (JSON)."""
        record = asdict(self)
        record["history"] = {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in asdict(self.history).items()
        }
        record["sharing"] = {kind.value: n for kind, n in self.sharing.items()}
        record["referral_shared"] = sorted(kind.value for kind in self.referral_shared)
        return record
