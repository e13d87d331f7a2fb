"""Accounts: three per member, four per merchant.

Members hold `available`, `pending` and `reserved`; their balances live in one row each, locked
by the entries that touch them. The merchant's `issued`, `redeemed`, `expired` and `forfeited`
accounts are touched by nearly every entry, so they have fixed ids and no balance row at all:
their balances are derived from postings (see `seal.py`), and no entry waits on another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AccountKind(StrEnum):
    AVAILABLE = "available"
    PENDING = "pending"
    RESERVED = "reserved"
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    FORFEITED = "forfeited"


MEMBER_KINDS = frozenset({AccountKind.AVAILABLE, AccountKind.PENDING, AccountKind.RESERVED})
SYSTEM_ACCOUNT_IDS: dict[AccountKind, int] = {
    AccountKind.ISSUED: -1,
    AccountKind.REDEEMED: -2,
    AccountKind.EXPIRED: -3,
    AccountKind.FORFEITED: -4,
}
SYSTEM_KIND_BY_ID = {account_id: kind for kind, account_id in SYSTEM_ACCOUNT_IDS.items()}


@dataclass(frozen=True, order=True)
class AccountRef:
    """Names an account: a member's (`member_id` set) or the merchant's (`member_id` empty)."""

    merchant_id: str
    kind: AccountKind
    member_id: str = ""

    @property
    def is_member(self) -> bool:
        return self.kind in MEMBER_KINDS


def member_account(merchant_id: str, member_id: str, kind: AccountKind) -> AccountRef:
    return AccountRef(merchant_id, kind, member_id)


def system_account(merchant_id: str, kind: AccountKind) -> AccountRef:
    return AccountRef(merchant_id, kind)
