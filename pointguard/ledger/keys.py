"""Idempotency keys, built from their parts so that two different things never share one key.

Ids come from storefronts and may hold any character, so a key made by joining ids with a
separator is ambiguous: `challenge:c:m:1` was both member `m`'s second completion and member
`m:1`'s first, and the second of them silently replayed the first. `idempotency_key(kind,
*parts)` writes the kind, then each part prefixed with its length:

    idempotency_key("challenge", "c", "m:1", 0) == "challenge/1:c/3:m:1/1:0"

Read left to right, the lengths say where every part ends, so the parts (and the kind, which
holds no `/`) can be read back from the key: different parts give different keys. A key that
would pass the ledger's length limit is the kind and the SHA-256 of its readable form instead
(`kind/#<hex>`; readable parts start with a digit, so the two forms never meet).

Keys made before this module were `kind:part:part...` (every one started with a word and a
`:`); every key made here has `/` right after its kind word, so no new key equals an old one
and entries posted under old keys are never replayed, or taken, by new ones.
"""

from __future__ import annotations

import hashlib
import re

from pointguard.errors import InvalidEntry
from pointguard.ledger.entries import MAX_IDEMPOTENCY_KEY_CHARS

KIND_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
HASHED_MARK = "#"


def idempotency_key(kind: str, *parts: str | int) -> str:
    """The key of the entry (or program row) of `kind` that `parts` identify; see the module."""
    if kind not in _checked_kinds:
        if not KIND_PATTERN.fullmatch(kind):
            raise InvalidEntry(f"key kind {kind!r} must match {KIND_PATTERN.pattern}")
        _checked_kinds.add(kind)
    key = kind
    for part in parts:
        text = str(part)
        key += f"/{len(text)}:{text}"
    if len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return key
    return f"{kind}/{HASHED_MARK}{hashlib.sha256(key.encode()).hexdigest()}"


# Kinds that matched `KIND_PATTERN` once: a few dozen, checked on every key otherwise.
_checked_kinds: set[str] = set()
