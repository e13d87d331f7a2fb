"""The double-entry points ledger. Everything above it stands on these invariants:

1. Every entry has two or more postings, and their signed amounts sum to zero.
2. Entries and postings are append-only (database triggers refuse UPDATE and DELETE); a
   correction is a new entry that names the entry it `reverses`.
3. `(merchant_id, idempotency_key)` is unique: posting the same entry under a key again returns
   the first entry and changes nothing, even when the repeats race; a different entry under a
   used key is an `IdempotencyConflict`. Keys are built from their parts by `keys.py`, never
   joined with a separator that an id could hold.
4. A member's `pending` and `reserved` never go below zero, and `available` only through a
   clawback (a refund of points already released), which later credits settle first.
5. Stored member balances equal the sum of their postings; the merchant's system accounts
   (`issued`, `redeemed`, `expired`, `forfeited`) have no balance row and are derived from
   postings, so no entry locks a merchant-wide row.
6. Outstanding liability (members' available + pending + reserved) equals minus the sum of
   the system accounts.
7. Lots back balances (see `effects.py`); spends and expiry take the earliest-expiring first.
8. Sealed entries form a SHA-256 chain per merchant; `verify.py` recomputes 1, 4-8.

`posting.post_entries` is the one way in; `operations` holds the use cases built on it.

The names below are imported on first use, so that importing one pure module of the ledger
(`keys`, for the program's rules) does not load the database layer with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pointguard.ledger.accounts import AccountKind, AccountRef, member_account, system_account
    from pointguard.ledger.balances import (
        ExpiringPoints,
        MemberBalances,
        expiring_within,
        member_balances,
        outstanding_liability,
        system_balances,
    )
    from pointguard.ledger.entries import EntryKind, NewEntry, PostedEntry, Posting
    from pointguard.ledger.posting import post_entries
    from pointguard.ledger.reading import (
        HistoryPage,
        LotState,
        load_entry,
        lot_states,
        member_history,
    )

_MODULE_OF = {
    "AccountKind": "accounts",
    "AccountRef": "accounts",
    "EntryKind": "entries",
    "ExpiringPoints": "balances",
    "HistoryPage": "reading",
    "LotState": "reading",
    "MemberBalances": "balances",
    "NewEntry": "entries",
    "PostedEntry": "entries",
    "Posting": "entries",
    "expiring_within": "balances",
    "load_entry": "reading",
    "lot_states": "reading",
    "member_account": "accounts",
    "member_balances": "balances",
    "member_history": "reading",
    "outstanding_liability": "balances",
    "post_entries": "posting",
    "system_account": "accounts",
    "system_balances": "balances",
}

__all__ = [
    "AccountKind",
    "AccountRef",
    "EntryKind",
    "ExpiringPoints",
    "HistoryPage",
    "LotState",
    "MemberBalances",
    "NewEntry",
    "PostedEntry",
    "Posting",
    "expiring_within",
    "load_entry",
    "lot_states",
    "member_account",
    "member_balances",
    "member_history",
    "outstanding_liability",
    "post_entries",
    "system_account",
    "system_balances",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pointguard.ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pointguard.ledger.{module}"), name)
    globals()[name] = value
    return value
