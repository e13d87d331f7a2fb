"""Merchants and their credentials, in the caller's transaction.

Rules this module enforces:
- Secrets are stored encrypted (`secretbox`, bound to merchant and kind): inbound webhook
  secrets, the outbound Ed25519 private key and the outbound webhook secret. API keys are
  stored only as their SHA-256, which is enough for random 192-bit keys, so an API key's
  plaintext exists once, in the `NewMerchant` that made it. Secrets come back decrypted only
  from `merchant_credentials`, for verifying and signing webhooks.
- A merchant has at most `MAX_ACTIVE_INBOUND_SECRETS` active inbound secrets, so a storefront
  can roll its secret over without dropping webhooks: a rotation adds the new secret and
  retires the oldest beyond that; `retire_inbound_secret` ends the rollover.
- Every change to a merchant's credentials first locks the merchant's row, so concurrent
  rotations run one after the other and cannot leave three secrets active.
- A Shopify- or WooCommerce-style sender signs with the secret the shop owner chose there
  (`set_adapter_secret`, one active per sender) when one is set, else with the inbound secret.
- A JWKS URL (the storefront's keys for Saleor-style senders) is https, or http to this
  machine only: whoever can alter the key set can sign webhooks.
- An unknown merchant raises `UnknownMerchant` on writes; `merchant_credentials` answers None.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pointguard import db
from pointguard.db import PgConnection
from pointguard.errors import CredentialUnreadable, MerchantExists, MerchantInvalid, UnknownMerchant
from pointguard.plugin.secretbox import decrypt, encrypt
from pointguard.plugin.signatures import matches_any, new_ed25519_keypair, new_webhook_secret

INBOUND_SECRET = "inbound_secret"
INBOUND_PUBLIC_KEY = "inbound_public_key"
OUTBOUND_PRIVATE_KEY = "outbound_private_key"
OUTBOUND_SECRET = "outbound_secret"
API_KEY = "api_key"
# The sender-chosen HMAC secret of each adapter, by the sender's name in its route.
ADAPTER_SECRETS = {"shopify": "shopify_secret", "woocommerce": "woocommerce_secret"}

MAX_ACTIVE_INBOUND_SECRETS = 2
API_KEY_PREFIX = "pgk_"
API_KEY_RANDOM_CHARS = 32
ED25519_KEY_BYTES = 32
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2000
MAX_ADAPTER_SECRET_CHARS = 1000
SLUG_MAX_CHARS = 40
ID_SUFFIX_CHARS = 6
ID_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
MAX_ID_ATTEMPTS = 5  # a generated id colliding even once is a one-in-two-billion event
# Ids appear in URLs (`/webhooks/{merchant}`), so they are kept to URL-safe characters.
MERCHANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

INSERT_MERCHANT = """
INSERT INTO merchants (merchant_id, name, endpoint_url) VALUES ($1, $2, $3)
ON CONFLICT (merchant_id) DO NOTHING
RETURNING merchant_id
"""

LOCK_MERCHANT = "SELECT merchant_id FROM merchants WHERE merchant_id = $1 FOR UPDATE"

SELECT_MERCHANT = "SELECT name, endpoint_url, jwks_url FROM merchants WHERE merchant_id = $1"

SET_ENDPOINT = "UPDATE merchants SET endpoint_url = $2 WHERE merchant_id = $1"

SET_JWKS_URL = "UPDATE merchants SET jwks_url = $2 WHERE merchant_id = $1"

INSERT_CREDENTIAL = """
INSERT INTO merchant_credentials (merchant_id, kind, value) VALUES ($1, $2, $3)
"""

INSERT_CREDENTIALS = """
INSERT INTO merchant_credentials (merchant_id, kind, value)
SELECT $1, kind, value FROM unnest($2::text[], $3::bytea[]) AS c (kind, value)
"""

ACTIVE_CREDENTIALS = """
SELECT kind, value FROM merchant_credentials
WHERE merchant_id = $1 AND retired_at IS NULL
ORDER BY credential_id DESC
"""

ACTIVE_OF_KIND = """
SELECT value FROM merchant_credentials
WHERE merchant_id = $1 AND kind = $2 AND retired_at IS NULL
"""

# Retire all active credentials of a kind but the newest `$3` (identity order is insertion
# order here: the merchant's row lock serializes the writers).
RETIRE_ALL_BUT_NEWEST = """
UPDATE merchant_credentials SET retired_at = now()
WHERE merchant_id = $1 AND kind = $2 AND retired_at IS NULL
  AND credential_id NOT IN (
      SELECT credential_id FROM merchant_credentials
      WHERE merchant_id = $1 AND kind = $2 AND retired_at IS NULL
      ORDER BY credential_id DESC
      LIMIT $3)
"""


@dataclass(frozen=True)
class NewMerchant:
    """What `create_merchant` made, with the plaintexts that are shown this once only.
    `outbound_public_key` (base64 of the raw Ed25519 key) verifies our v1a deliveries;
    `outbound_webhook_secret` verifies our v1 deliveries."""

    merchant_id: str
    name: str
    endpoint_url: str | None
    webhook_secret: str = field(repr=False)
    api_key: str = field(repr=False)
    outbound_public_key: str
    outbound_webhook_secret: str = field(repr=False)


@dataclass(frozen=True)
class MerchantCredentials:
    """A merchant's active credentials, decrypted: `inbound_secrets` (newest first) and
    `inbound_public_keys` (raw Ed25519) verify its webhooks to us; `outbound_private_key`
    (raw Ed25519) and `outbound_secret` sign our deliveries to `endpoint_url`;
    `adapter_secrets` (sender, secret) are the secrets chosen in Shopify or WooCommerce, and
    `jwks_url` has the storefront's keys for Saleor-style webhooks."""

    merchant_id: str
    name: str
    endpoint_url: str | None
    inbound_secrets: tuple[str, ...] = field(repr=False)
    inbound_public_keys: tuple[bytes, ...]
    outbound_private_key: bytes = field(repr=False)
    outbound_secret: str = field(repr=False)
    jwks_url: str | None = None
    adapter_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def hmac_secrets(self, sender: str) -> tuple[str, ...]:
        """What `sender` (`shopify`, `woocommerce`) signs with: the secret chosen for it, or
        else the inbound secrets."""
        chosen = tuple(secret for name, secret in self.adapter_secrets if name == sender)
        return chosen or self.inbound_secrets


async def create_merchant(
    pg: PgConnection,
    key: bytes,
    name: str,
    *,
    endpoint_url: str | None = None,
    merchant_id: str | None = None,
) -> NewMerchant:
    """Register a merchant with fresh credentials. Without `merchant_id`, the id is the name's
    slug and a short random suffix; a given id that exists raises `MerchantExists`."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise MerchantInvalid(f"a merchant name must have 1 to {MAX_NAME_CHARS} characters")
    if endpoint_url is not None:
        _check_url(endpoint_url)
    if merchant_id is not None:
        _check_merchant_id(merchant_id)
        if await pg.fetchval(INSERT_MERCHANT, merchant_id, name, endpoint_url) is None:
            raise MerchantExists(f"merchant {merchant_id!r} already exists")
    else:
        merchant_id = await _insert_with_new_id(pg, name, endpoint_url)

    webhook_secret = new_webhook_secret()
    outbound_secret = new_webhook_secret()
    private_key, public_key = new_ed25519_keypair()
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_CHARS)[:API_KEY_RANDOM_CHARS]
    stored = {
        INBOUND_SECRET: encrypt(
            key, webhook_secret.encode(), merchant_id=merchant_id, kind=INBOUND_SECRET
        ),
        OUTBOUND_PRIVATE_KEY: encrypt(
            key, private_key, merchant_id=merchant_id, kind=OUTBOUND_PRIVATE_KEY
        ),
        OUTBOUND_SECRET: encrypt(
            key, outbound_secret.encode(), merchant_id=merchant_id, kind=OUTBOUND_SECRET
        ),
        API_KEY: _api_key_hash(api_key),
    }
    await pg.execute(INSERT_CREDENTIALS, merchant_id, list(stored), list(stored.values()))
    return NewMerchant(
        merchant_id=merchant_id,
        name=name,
        endpoint_url=endpoint_url,
        webhook_secret=webhook_secret,
        api_key=api_key,
        outbound_public_key=base64.b64encode(public_key).decode(),
        outbound_webhook_secret=outbound_secret,
    )


async def rotate_inbound_secret(pg: PgConnection, key: bytes, merchant_id: str) -> str:
    """Add a new inbound webhook secret and return it. The previous one stays valid until the
    storefront has switched (`retire_inbound_secret`); any older one is retired now."""
    secret = new_webhook_secret()
    sealed = encrypt(key, secret.encode(), merchant_id=merchant_id, kind=INBOUND_SECRET)
    await _add_credential(pg, merchant_id, INBOUND_SECRET, sealed, keep=MAX_ACTIVE_INBOUND_SECRETS)
    return secret


async def retire_inbound_secret(pg: PgConnection, merchant_id: str) -> int:
    """End a rollover: retire every active inbound secret but the newest. Returns how many
    were retired (0 when there was no rollover going on)."""
    await _lock_merchant(pg, merchant_id)
    return db.rows_affected(await pg.execute(RETIRE_ALL_BUT_NEWEST, merchant_id, INBOUND_SECRET, 1))


async def set_inbound_public_key(pg: PgConnection, merchant_id: str, public_key_raw: bytes) -> None:
    """Verify the merchant's v1a (Ed25519) webhooks with this raw 32-byte public key from now
    on, in place of any earlier one."""
    if len(public_key_raw) != ED25519_KEY_BYTES:
        raise MerchantInvalid(
            f"an Ed25519 public key has {ED25519_KEY_BYTES} raw bytes, got {len(public_key_raw)}"
        )
    await _add_credential(pg, merchant_id, INBOUND_PUBLIC_KEY, public_key_raw, keep=1)


async def set_endpoint(pg: PgConnection, merchant_id: str, url: str | None) -> None:
    """Deliver the merchant's outbound webhooks to `url` (None: deliver nothing)."""
    if url is not None:
        _check_url(url)
    await _lock_merchant(pg, merchant_id)
    await pg.execute(SET_ENDPOINT, merchant_id, url)


async def set_adapter_secret(
    pg: PgConnection, key: bytes, merchant_id: str, sender: str, secret: str
) -> None:
    """Verify `sender`'s webhooks (`shopify`, `woocommerce`) with `secret`, the one the shop
    owner chose there, from now on: in place of the inbound secret and of any earlier one."""
    kind = ADAPTER_SECRETS.get(sender)
    if kind is None:
        raise MerchantInvalid(f"sender {sender!r} is not one of {', '.join(ADAPTER_SECRETS)}")
    if not secret or len(secret) > MAX_ADAPTER_SECRET_CHARS or secret != secret.strip():
        raise MerchantInvalid(
            f"a {sender} secret must have 1 to {MAX_ADAPTER_SECRET_CHARS} characters and no"
            " leading or trailing spaces"
        )
    sealed = encrypt(key, secret.encode(), merchant_id=merchant_id, kind=kind)
    await _add_credential(pg, merchant_id, kind, sealed, keep=1)


async def set_jwks_url(pg: PgConnection, merchant_id: str, url: str | None) -> None:
    """Verify the merchant's Saleor-style webhooks with the keys at `url` (None: refuse them)."""
    if url is not None:
        _check_jwks_url(url)
    await _lock_merchant(pg, merchant_id)
    await pg.execute(SET_JWKS_URL, merchant_id, url)


async def merchant_credentials(
    pg: PgConnection, key: bytes, merchant_id: str
) -> MerchantCredentials | None:
    """The merchant's active credentials, decrypted; None for a merchant we do not know."""
    merchant = await pg.fetchrow(SELECT_MERCHANT, merchant_id)
    if merchant is None:
        return None
    by_kind: dict[str, list[bytes]] = {}
    for row in await pg.fetch(ACTIVE_CREDENTIALS, merchant_id):
        by_kind.setdefault(row["kind"], []).append(bytes(row["value"]))

    def opened(kind: str) -> list[bytes]:
        return [decrypt(key, v, merchant_id=merchant_id, kind=kind) for v in by_kind.get(kind, [])]

    def newest(kind: str) -> bytes:
        values = opened(kind)
        if not values:
            raise CredentialUnreadable(f"merchant {merchant_id!r} has no active {kind}")
        return values[0]

    return MerchantCredentials(
        merchant_id=merchant_id,
        name=merchant["name"],
        endpoint_url=merchant["endpoint_url"],
        inbound_secrets=tuple(v.decode() for v in opened(INBOUND_SECRET)),
        inbound_public_keys=tuple(by_kind.get(INBOUND_PUBLIC_KEY, [])),
        outbound_private_key=newest(OUTBOUND_PRIVATE_KEY),
        outbound_secret=newest(OUTBOUND_SECRET).decode(),
        jwks_url=merchant["jwks_url"],
        adapter_secrets=tuple(
            (sender, secret.decode())
            for sender, kind in ADAPTER_SECRETS.items()
            for secret in opened(kind)[:1]
        ),
    )


async def authenticate_api_key(pg: PgConnection, merchant_id: str, api_key: str) -> bool:
    """True when `api_key` is one of the merchant's active API keys (constant-time compare)."""
    rows = await pg.fetch(ACTIVE_OF_KIND, merchant_id, API_KEY)
    return matches_any(_api_key_hash(api_key), [bytes(row["value"]) for row in rows])


def _api_key_hash(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


async def _insert_with_new_id(pg: PgConnection, name: str, endpoint_url: str | None) -> str:
    slug = _slug(name)
    for _ in range(MAX_ID_ATTEMPTS):
        suffix = "".join(secrets.choice(ID_SUFFIX_ALPHABET) for _ in range(ID_SUFFIX_CHARS))
        candidate = f"{slug}-{suffix}"
        if await pg.fetchval(INSERT_MERCHANT, candidate, name, endpoint_url) is not None:
            return candidate
    raise MerchantExists(f"no free merchant id for {name!r} after {MAX_ID_ATTEMPTS} tries")


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:SLUG_MAX_CHARS].rstrip("-") or "merchant"


def _check_merchant_id(merchant_id: str) -> None:
    if not MERCHANT_ID.fullmatch(merchant_id):
        raise MerchantInvalid(
            f"merchant id {merchant_id!r} must be 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_CHARS:
        raise MerchantInvalid(f"endpoint {url!r} must be an http:// or https:// URL with a host")


def _check_jwks_url(url: str) -> None:
    _check_url(url)
    parts = urlsplit(url)
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        raise MerchantInvalid(
            f"JWKS URL {url!r} must be https:// (http:// only to this machine): whoever can"
            " change the keys in transit could sign webhooks"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _add_credential(
    pg: PgConnection, merchant_id: str, kind: str, value: bytes, *, keep: int
) -> None:
    """Add a credential of `kind` and retire all but the newest `keep` of that kind, under the
    merchant's lock (so two rotations cannot both keep their own)."""
    await _lock_merchant(pg, merchant_id)
    await pg.execute(INSERT_CREDENTIAL, merchant_id, kind, value)
    await pg.execute(RETIRE_ALL_BUT_NEWEST, merchant_id, kind, keep)


async def _lock_merchant(pg: PgConnection, merchant_id: str) -> None:
    if await pg.fetchval(LOCK_MERCHANT, merchant_id) is None:
        raise UnknownMerchant(f"no merchant {merchant_id!r}")
