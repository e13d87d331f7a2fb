"""Entries and postings, and the checks every entry passes before it reaches the database.

An entry's kind fixes its shape: which account kinds it may take points from and give them to,
and which earlier entry it must name. Lots and holds (`effects.py`) follow from the kind, so a
shape that is not listed here cannot be posted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pointguard.errors import (
    BatchTooLarge,
    CrossMerchantPosting,
    InvalidAmount,
    InvalidEntry,
    InvalidReference,
    TooFewPostings,
    UnbalancedEntry,
)
from pointguard.ledger.accounts import AccountKind, AccountRef

MAX_BATCH_ENTRIES = 1000
MAX_POSTINGS_PER_ENTRY = 16
MAX_AMOUNT_POINTS = 10**12
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_DESCRIPTION_CHARS = 500


class EntryKind(StrEnum):
    EARN = "earn"
    RELEASE = "release"
    REVERSAL = "reversal"
    FORFEIT = "forfeit"
    CLAWBACK = "clawback"
    RESERVE = "reserve"
    CAPTURE = "capture"
    VOID = "void"
    EXPIRE = "expire"


@dataclass(frozen=True)
class Shape:
    debits: frozenset[AccountKind]
    credits: frozenset[AccountKind]
    needs: str | None = None  # "reverses" or "settles": the earlier entry this one acts on


SHAPES: dict[EntryKind, Shape] = {
    EntryKind.EARN: Shape(
        frozenset({AccountKind.ISSUED}), frozenset({AccountKind.PENDING, AccountKind.AVAILABLE})
    ),
    EntryKind.RELEASE: Shape(
        frozenset({AccountKind.PENDING}), frozenset({AccountKind.AVAILABLE}), "settles"
    ),
    EntryKind.REVERSAL: Shape(
        frozenset({AccountKind.PENDING}), frozenset({AccountKind.ISSUED}), "reverses"
    ),
    EntryKind.FORFEIT: Shape(
        frozenset({AccountKind.PENDING}), frozenset({AccountKind.FORFEITED}), "reverses"
    ),
    EntryKind.CLAWBACK: Shape(frozenset({AccountKind.AVAILABLE}), frozenset({AccountKind.ISSUED})),
    EntryKind.RESERVE: Shape(frozenset({AccountKind.AVAILABLE}), frozenset({AccountKind.RESERVED})),
    EntryKind.CAPTURE: Shape(
        frozenset({AccountKind.RESERVED}), frozenset({AccountKind.REDEEMED}), "settles"
    ),
    EntryKind.VOID: Shape(
        frozenset({AccountKind.RESERVED}), frozenset({AccountKind.AVAILABLE}), "reverses"
    ),
    EntryKind.EXPIRE: Shape(frozenset({AccountKind.AVAILABLE}), frozenset({AccountKind.EXPIRED})),
}


@dataclass(frozen=True)
class Posting:
    """A signed movement on one account: negative takes points out, positive puts them in."""

    account: AccountRef
    amount_points: int


@dataclass(frozen=True)
class NewEntry:
    merchant_id: str
    idempotency_key: str
    kind: EntryKind
    description: str
    source: str
    postings: Sequence[Posting]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reverses: int | None = None
    settles: int | None = None
    release_at: datetime | None = None
    lot_expires_at: datetime | None = None
    hold_expires_at: datetime | None = None

    @property
    def member_id(self) -> str:
        """The one member this entry touches (validated: exactly one)."""
        return next(p.account.member_id for p in self.postings if p.account.is_member)

    def member_delta(self, kind: AccountKind) -> int:
        return _delta(self.postings, kind)

    @property
    def target(self) -> int | None:
        return self.reverses if self.reverses is not None else self.settles


@dataclass(frozen=True)
class PostedEntry:
    entry_id: int
    merchant_id: str
    idempotency_key: str
    kind: EntryKind
    description: str
    source: str
    metadata: Mapping[str, Any]
    reverses: int | None
    settles: int | None
    created_at: datetime
    postings: tuple[Posting, ...]
    replayed: bool = False

    def member_delta(self, kind: AccountKind) -> int:
        """How the entry moved the member's account of `kind` (0 if it did not touch it): what
        a customer's history shows beside the entry's words."""
        return _delta(self.postings, kind)


def _delta(postings: Sequence[Posting], kind: AccountKind) -> int:
    return sum(p.amount_points for p in postings if p.account.kind == kind)


def validate_batch(entries: Sequence[NewEntry]) -> None:
    """Refuse, naming the problem, anything that could never be posted. Pure: no I/O."""
    if not entries:
        raise InvalidEntry("a batch needs at least one entry")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise BatchTooLarge(
            f"a batch holds at most {MAX_BATCH_ENTRIES} entries, got {len(entries)}"
        )
    merchant_id = entries[0].merchant_id
    keys: set[str] = set()
    for entry in entries:
        if entry.merchant_id != merchant_id:
            raise CrossMerchantPosting(
                f"one batch belongs to one merchant: {merchant_id!r} and {entry.merchant_id!r}"
            )
        if entry.idempotency_key in keys:
            raise InvalidEntry(f"idempotency key {entry.idempotency_key!r} twice in one batch")
        keys.add(entry.idempotency_key)
        validate_entry(entry)


def validate_entry(entry: NewEntry) -> None:
    label = f"entry {entry.idempotency_key!r}"
    if not entry.merchant_id:
        raise InvalidEntry(f"{label}: merchant_id is empty")
    if not 0 < len(entry.idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidEntry(f"{label}: idempotency_key must be 1..{MAX_IDEMPOTENCY_KEY_CHARS} chars")
    if not entry.description or len(entry.description) > MAX_DESCRIPTION_CHARS:
        raise InvalidEntry(f"{label}: description must be 1..{MAX_DESCRIPTION_CHARS} chars")
    if not entry.source:
        raise InvalidEntry(f"{label}: source (the rule that produced it) is empty")
    if not isinstance(entry.kind, EntryKind):
        raise InvalidEntry(f"{label}: unknown kind {entry.kind!r}")
    if len(entry.postings) < 2:
        raise TooFewPostings(f"{label}: needs at least 2 postings, has {len(entry.postings)}")
    if len(entry.postings) > MAX_POSTINGS_PER_ENTRY:
        raise InvalidEntry(f"{label}: at most {MAX_POSTINGS_PER_ENTRY} postings")
    _validate_postings(entry, label)
    _validate_shape(entry, label)


def _validate_postings(entry: NewEntry, label: str) -> None:
    seen: set[AccountRef] = set()
    for posting in entry.postings:
        amount = posting.amount_points
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidAmount(f"{label}: amount_points must be an integer, got {amount!r}")
        if amount == 0 or abs(amount) > MAX_AMOUNT_POINTS:
            raise InvalidAmount(
                f"{label}: amount_points must be non-zero and at most {MAX_AMOUNT_POINTS} in size,"
                f" got {amount}"
            )
        account = posting.account
        if account.merchant_id != entry.merchant_id:
            raise CrossMerchantPosting(
                f"{label}: posting on an account of merchant {account.merchant_id!r} in an entry"
                f" of merchant {entry.merchant_id!r}"
            )
        if not isinstance(account.kind, AccountKind):
            raise InvalidEntry(f"{label}: unknown account kind {account.kind!r}")
        if account.is_member != bool(account.member_id):
            raise InvalidEntry(f"{label}: {account.kind} account needs member_id set iff member")
        if account in seen:
            raise InvalidEntry(f"{label}: two postings on {account.kind} of {account.member_id!r}")
        seen.add(account)
    total = sum(p.amount_points for p in entry.postings)
    if total != 0:
        raise UnbalancedEntry(f"{label}: postings sum to {total}, must sum to 0")


def _validate_shape(entry: NewEntry, label: str) -> None:
    shape = SHAPES[entry.kind]
    members = {p.account.member_id for p in entry.postings if p.account.is_member}
    if len(members) != 1:
        raise InvalidEntry(f"{label}: a {entry.kind} entry touches exactly one member")
    for posting in entry.postings:
        allowed = shape.debits if posting.amount_points < 0 else shape.credits
        if posting.account.kind not in allowed:
            side = "take from" if posting.amount_points < 0 else "give to"
            raise InvalidEntry(
                f"{label}: a {entry.kind} entry cannot {side} {posting.account.kind}"
            )
    for link in ("reverses", "settles"):
        value = getattr(entry, link)
        if (value is not None) != (shape.needs == link) and not (
            entry.kind == EntryKind.CLAWBACK and link == "reverses"
        ):
            raise InvalidReference(f"{label}: a {entry.kind} entry {_link_rule(shape, link)}")
    if entry.member_delta(AccountKind.PENDING) > 0 and entry.release_at is None:
        raise InvalidEntry(f"{label}: pending points need release_at")
    if entry.member_delta(AccountKind.RESERVED) > 0 and entry.hold_expires_at is None:
        raise InvalidEntry(f"{label}: a reservation needs hold_expires_at")


def _link_rule(shape: Shape, link: str) -> str:
    return f"must name the entry it {link}" if shape.needs == link else f"takes no {link!r} link"
