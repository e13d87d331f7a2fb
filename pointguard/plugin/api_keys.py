"""Merchants' API keys: who may call the GraphQL API, for which merchant, in which role.

A key is `pgk_` and 32 random URL-safe characters (192 bits), stored only as its SHA-256: the
plaintext exists once, in what `new_api_key` returns. For a random key of that size a plain hash
is enough (no salt or slow hash is needed: there is nothing to guess), and it lets a request be
matched to its merchant by the hash alone, one index probe.

Each key has a role (`storefront`, `reviewer`, `admin`) and a name, unique among the merchant's
live keys, which reviewer and admin actions carry into the audit trail. Revoking keeps the row,
so old audit lines still name the key's holder."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from pointguard.db import PgConnection, rows_affected
from pointguard.errors import MerchantInvalid, UnknownMerchant

API_KEY_PREFIX = "pgk_"
API_KEY_RANDOM_CHARS = 32
STOREFRONT_KEY_NAME = "storefront"  # the key `merchant create` makes
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

INSERT_API_KEY = """
INSERT INTO merchant_api_keys (merchant_id, key_hash, role, name) VALUES ($1, $2, $3, $4)
"""

SELECT_LIVE_KEY_OWNER = """
SELECT merchant_id, role, name FROM merchant_api_keys WHERE key_hash = $1 AND revoked_at IS NULL
"""

REVOKE_API_KEY = """
UPDATE merchant_api_keys SET revoked_at = now()
WHERE merchant_id = $1 AND name = $2 AND revoked_at IS NULL
"""

SELECT_API_KEYS = """
SELECT name, role, created_at, revoked_at FROM merchant_api_keys
WHERE merchant_id = $1 ORDER BY created_at, name
"""


class KeyRole(StrEnum):
    STOREFRONT = "storefront"
    REVIEWER = "reviewer"
    ADMIN = "admin"


@dataclass(frozen=True)
class KeyOwner:
    """Whose a presented key is."""

    merchant_id: str
    role: KeyRole
    name: str


@dataclass(frozen=True)
class ApiKeyListing:
    """A key as `list_api_keys` shows it: never its plaintext nor its hash."""

    name: str
    role: KeyRole
    created_at: datetime
    revoked_at: datetime | None


async def new_api_key(pg: PgConnection, merchant_id: str, role: KeyRole, name: str) -> str:
    """Make a key and return its plaintext, the only time it exists. Raises `MerchantInvalid`
    for a badly formed or already used name, `UnknownMerchant` for a merchant that is not."""
    if not KEY_NAME.fullmatch(name):
        raise MerchantInvalid(
            f"a key name is 1 to 64 letters, digits, '.', '_', '@' or '-', not {name!r}"
        )
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_CHARS)[:API_KEY_RANDOM_CHARS]
    try:
        async with pg.transaction():
            await pg.execute(INSERT_API_KEY, merchant_id, api_key_hash(api_key), role, name)
    except asyncpg.ForeignKeyViolationError as error:
        raise UnknownMerchant(f"no merchant {merchant_id!r}") from error
    except asyncpg.UniqueViolationError as error:
        raise MerchantInvalid(
            f"merchant {merchant_id!r} already has a live key named {name!r}"
        ) from error
    return api_key


async def find_api_key(pg: PgConnection, api_key: str) -> KeyOwner | None:
    """Whose live key `api_key` is; None for a revoked, unknown or malformed one."""
    if not api_key.startswith(API_KEY_PREFIX):
        return None
    row = await pg.fetchrow(SELECT_LIVE_KEY_OWNER, api_key_hash(api_key))
    if row is None:
        return None
    return KeyOwner(row["merchant_id"], KeyRole(row["role"]), row["name"])


async def revoke_api_key(pg: PgConnection, merchant_id: str, name: str) -> bool:
    """Revoke the merchant's live key named `name`; False when it has none."""
    return rows_affected(await pg.execute(REVOKE_API_KEY, merchant_id, name)) == 1


async def list_api_keys(pg: PgConnection, merchant_id: str) -> list[ApiKeyListing]:
    return [
        ApiKeyListing(r["name"], KeyRole(r["role"]), r["created_at"], r["revoked_at"])
        for r in await pg.fetch(SELECT_API_KEYS, merchant_id)
    ]


def api_key_hash(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()
