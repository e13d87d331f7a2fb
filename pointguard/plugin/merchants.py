"""Merchants and their credentials, in the caller's transaction.

Rules this module enforces:
- Secrets are stored encrypted (`secretbox`, bound to merchant and kind): inbound webhook
  secrets, the outbound Ed25519 private key and the outbound webhook secret. What is not
  secret but decides who may sign or where deliveries go (inbound public keys, the endpoint
  and JWKS URLs) is sealed too, so that a value copied from another merchant's row is refused;
  the URLs are also kept in the clear in `merchants` for queries, and must match. API keys
  live in `api_keys.py`; the storefront key a new merchant gets exists in plaintext once, in
  the `NewMerchant` that made it. Secrets come back decrypted only from
  `merchant_credentials`, for verifying and signing webhooks.
- A merchant has at most `MAX_ACTIVE_INBOUND_SECRETS` active inbound secrets, so a storefront
  can roll its secret over without dropping webhooks: a rotation adds the new secret and
  retires the oldest beyond that; `retire_inbound_secret` ends the rollover.
- Every change to a merchant's credentials first locks the merchant's row, so concurrent
  rotations run one after the other and cannot leave three secrets active.
- A Shopify- or WooCommerce-style sender signs with the secret the shop owner chose there
  (`set_adapter_secret`, one active per sender) when one is set, else with a key derived for
  that sender alone from the inbound secret (`sender_secret`): a body signed for one route
  never verifies on another, nor as a Standard Webhook.
- A JWKS URL (the storefront's keys for Saleor-style senders) is https, or http to this
  machine only: whoever can alter the key set can sign webhooks.
- An endpoint or JWKS URL is http(s) with a host, not written as an address we never send to
  (private, link-local, multicast, reserved, unspecified). That is only an early word to the
  operator: a name's addresses are checked each time a connection is opened
  (`outbound_http.py`), since DNS can answer differently later; and whether this machine
  (loopback) may be reached is the delivering process's setting, checked there too.
- An unknown merchant raises `UnknownMerchant` on writes; `merchant_credentials` answers None.
- `reseal_all` seals values under the current key, one merchant per transaction and a bounded
  batch of rows in each: values stored before key ids and unbound URLs (at the server's start),
  or every value under another key (`pointguard keys rotate`). A value that does not open is
  counted and left as it is; running it again does only what is left.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.errors import CredentialUnreadable, MerchantExists, MerchantInvalid, UnknownMerchant
from pointguard.plugin.api_keys import STOREFRONT_KEY_NAME, KeyRole, new_api_key
from pointguard.plugin.outbound_http import literal_refused_kind
from pointguard.plugin.secretbox import Keys, Sealed, keyring, seal, unseal
from pointguard.plugin.signatures import new_ed25519_keypair, new_webhook_secret

INBOUND_SECRET = "inbound_secret"
INBOUND_PUBLIC_KEY = "inbound_public_key"
OUTBOUND_PRIVATE_KEY = "outbound_private_key"
OUTBOUND_SECRET = "outbound_secret"
# The sender-chosen HMAC secret of each adapter, by the sender's name in its route.
ADAPTER_SECRETS = {"shopify": "shopify_secret", "woocommerce": "woocommerce_secret"}
# What a sender's derived key is an HMAC of, before the sender's name (`sender_secret`); a new
# version would change every derived key, so it is part of what a merchant configured.
SENDER_KEY_CONTEXT = "pointguard sender key v1:"
# The merchant's URLs, sealed under these kinds and named so in the `merchants` columns too.
ENDPOINT_URL = "endpoint_url"
JWKS_URL = "jwks_url"
# The fraud guard's key for identity digests: random, made on first use, never shown.
IDENTITY_KEY = "identity_key"
IDENTITY_KEY_BYTES = 32
# Stored in the clear before key ids (migration 0013): opened only to seal them.
PLAIN_BEFORE_KEY_IDS = frozenset({INBOUND_PUBLIC_KEY})

MAX_ACTIVE_INBOUND_SECRETS = 2
ED25519_KEY_BYTES = 32
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2000
MAX_ADAPTER_SECRET_CHARS = 1000
SLUG_MAX_CHARS = 40
ID_SUFFIX_CHARS = 6
ID_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
MAX_ID_ATTEMPTS = 5  # a generated id colliding even once is a one-in-two-billion event
RESEAL_MERCHANTS_PER_QUERY = 500
RESEAL_ROWS_PER_TRANSACTION = 200
# Ids appear in URLs (`/webhooks/{merchant}`), so they are kept to URL-safe characters.
MERCHANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

INSERT_MERCHANT = """
INSERT INTO merchants (merchant_id, name, endpoint_url) VALUES ($1, $2, $3)
ON CONFLICT (merchant_id) DO NOTHING
RETURNING merchant_id
"""

LOCK_MERCHANT = "SELECT merchant_id FROM merchants WHERE merchant_id = $1 FOR UPDATE"

SELECT_MERCHANT = "SELECT name, endpoint_url, jwks_url FROM merchants WHERE merchant_id = $1"

SET_URL = {
    ENDPOINT_URL: "UPDATE merchants SET endpoint_url = $2 WHERE merchant_id = $1",
    JWKS_URL: "UPDATE merchants SET jwks_url = $2 WHERE merchant_id = $1",
}

INSERT_CREDENTIAL = """
INSERT INTO merchant_credentials (merchant_id, kind, value, key_id) VALUES ($1, $2, $3, $4)
"""

INSERT_CREDENTIALS = """
INSERT INTO merchant_credentials (merchant_id, kind, value, key_id)
SELECT $1, kind, value, key_id
FROM unnest($2::text[], $3::bytea[], $4::text[]) AS c (kind, value, key_id)
"""

# What verifying and signing webhooks opens: not the fraud guard's identity key, which the
# guard alone opens (`merchant_identity_key`).
SELECT_ACTIVE_CREDENTIALS = """
SELECT kind, value, key_id FROM merchant_credentials
WHERE merchant_id = $1 AND retired_at IS NULL AND kind <> 'identity_key'
ORDER BY credential_id DESC
"""

SELECT_ACTIVE_SEALED_OF_KIND = """
SELECT value, key_id FROM merchant_credentials
WHERE merchant_id = $1 AND kind = $2 AND retired_at IS NULL
ORDER BY credential_id DESC
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

# A value needs sealing when it was stored before key ids, or ($2 given) is under another key
# than $2.
NEEDS_SEALING = """
(c.key_id IS NULL OR ($2::text IS NOT NULL AND c.key_id <> $2::text))
"""

COUNT_VALUES_NOT_UNDER = """
SELECT count(*) FROM merchant_credentials WHERE key_id IS DISTINCT FROM $1
"""

# A URL in `merchants` without its sealed copy: set before migration 0013.
UNBOUND_URL = """
(m.{kind} IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM merchant_credentials u
    WHERE u.merchant_id = m.merchant_id AND u.kind = '{kind}' AND u.retired_at IS NULL))
"""

SELECT_MERCHANTS_TO_SEAL = f"""
SELECT m.merchant_id FROM merchants m
WHERE m.merchant_id > $1 AND (
    EXISTS (SELECT 1 FROM merchant_credentials c
            WHERE c.merchant_id = m.merchant_id AND {NEEDS_SEALING})
    OR {UNBOUND_URL.format(kind=ENDPOINT_URL)}
    OR {UNBOUND_URL.format(kind=JWKS_URL)})
ORDER BY m.merchant_id
LIMIT $3
"""

LOCK_UNBOUND_URLS = f"""
SELECT {UNBOUND_URL.format(kind=ENDPOINT_URL)} AS endpoint_url_unbound, m.endpoint_url,
       {UNBOUND_URL.format(kind=JWKS_URL)} AS jwks_url_unbound, m.jwks_url
FROM merchants m WHERE m.merchant_id = $1
FOR UPDATE
"""

SELECT_VALUES_TO_SEAL = f"""
SELECT c.credential_id, c.kind, c.value, c.key_id FROM merchant_credentials c
WHERE c.merchant_id = $1 AND {NEEDS_SEALING} AND c.credential_id > $3
ORDER BY c.credential_id
LIMIT $4
"""

UPDATE_SEALED_VALUE = """
UPDATE merchant_credentials SET value = $3, key_id = $4
WHERE merchant_id = $1 AND credential_id = $2
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
        else its key derived from each active inbound secret (newest first, so a rollover
        keeps verifying). Never an inbound secret itself: these senders sign the body alone,
        so one key shared by two routes would let a body captured on one be sent to the
        other."""
        chosen = tuple(secret for name, secret in self.adapter_secrets if name == sender)
        return chosen or tuple(sender_secret(s, sender) for s in self.inbound_secrets)


def sender_secret(inbound_secret: str, sender: str) -> str:
    """The key `sender` signs with when the shop owner chose none: `{sender}_` and the
    unpadded base64url of HMAC-SHA256(inbound secret, `SENDER_KEY_CONTEXT` + sender), which
    `merchant create` prints for the shop's admin. Derived, not stored: it follows the inbound
    secret through rotations, and one key per sender keeps the routes apart."""
    digest = hmac.new(
        inbound_secret.encode(), (SENDER_KEY_CONTEXT + sender).encode(), hashlib.sha256
    ).digest()
    return f"{sender}_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def create_merchant(
    pg: PgConnection,
    key: Keys,
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
    plaintexts = {
        INBOUND_SECRET: webhook_secret.encode(),
        OUTBOUND_PRIVATE_KEY: private_key,
        OUTBOUND_SECRET: outbound_secret.encode(),
    }
    if endpoint_url is not None:
        plaintexts[ENDPOINT_URL] = endpoint_url.encode()
    stored = [
        (kind, seal(key, plain, merchant_id=merchant_id, kind=kind))
        for kind, plain in plaintexts.items()
    ]
    await pg.execute(
        INSERT_CREDENTIALS,
        merchant_id,
        [kind for kind, _ in stored],
        [sealed.value for _, sealed in stored],
        [sealed.key_id for _, sealed in stored],
    )
    api_key = await new_api_key(pg, merchant_id, KeyRole.STOREFRONT, STOREFRONT_KEY_NAME)
    return NewMerchant(
        merchant_id=merchant_id,
        name=name,
        endpoint_url=endpoint_url,
        webhook_secret=webhook_secret,
        api_key=api_key,
        outbound_public_key=base64.b64encode(public_key).decode(),
        outbound_webhook_secret=outbound_secret,
    )


async def rotate_inbound_secret(pg: PgConnection, key: Keys, merchant_id: str) -> str:
    """Add a new inbound webhook secret and return it. The previous one stays valid until the
    storefront has switched (`retire_inbound_secret`); any older one is retired now."""
    secret = new_webhook_secret()
    sealed = seal(key, secret.encode(), merchant_id=merchant_id, kind=INBOUND_SECRET)
    await _add_credential(pg, merchant_id, INBOUND_SECRET, sealed, keep=MAX_ACTIVE_INBOUND_SECRETS)
    return secret


async def retire_inbound_secret(pg: PgConnection, merchant_id: str) -> int:
    """End a rollover: retire every active inbound secret but the newest. Returns how many
    were retired (0 when there was no rollover going on)."""
    await _lock_merchant(pg, merchant_id)
    return db.rows_affected(await pg.execute(RETIRE_ALL_BUT_NEWEST, merchant_id, INBOUND_SECRET, 1))


async def set_inbound_public_key(
    pg: PgConnection, key: Keys, merchant_id: str, public_key_raw: bytes
) -> None:
    """Verify the merchant's v1a (Ed25519) webhooks with this raw 32-byte public key from now
    on, in place of any earlier one."""
    if len(public_key_raw) != ED25519_KEY_BYTES:
        raise MerchantInvalid(
            f"an Ed25519 public key has {ED25519_KEY_BYTES} raw bytes, got {len(public_key_raw)}"
        )
    sealed = seal(key, public_key_raw, merchant_id=merchant_id, kind=INBOUND_PUBLIC_KEY)
    await _add_credential(pg, merchant_id, INBOUND_PUBLIC_KEY, sealed, keep=1)


async def set_endpoint(pg: PgConnection, key: Keys, merchant_id: str, url: str | None) -> None:
    """Deliver the merchant's outbound webhooks to `url` (None: deliver nothing)."""
    if url is not None:
        _check_url(url)
    await _set_url(pg, key, merchant_id, ENDPOINT_URL, url)


async def set_adapter_secret(
    pg: PgConnection, key: Keys, merchant_id: str, sender: str, secret: str
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
    sealed = seal(key, secret.encode(), merchant_id=merchant_id, kind=kind)
    await _add_credential(pg, merchant_id, kind, sealed, keep=1)


async def set_jwks_url(pg: PgConnection, key: Keys, merchant_id: str, url: str | None) -> None:
    """Verify the merchant's Saleor-style webhooks with the keys at `url` (None: refuse them)."""
    if url is not None:
        _check_jwks_url(url)
    await _set_url(pg, key, merchant_id, JWKS_URL, url)


async def merchant_credentials(
    pg: PgConnection, key: Keys, merchant_id: str
) -> MerchantCredentials | None:
    """The merchant's active credentials, decrypted; None for a merchant we do not know. A
    value that does not open for this merchant, a public key or URL not bound to it, raises
    `CredentialUnreadable`."""
    merchant = await pg.fetchrow(SELECT_MERCHANT, merchant_id)
    if merchant is None:
        return None
    by_kind: dict[str, list[bytes]] = {}
    for row in await pg.fetch(SELECT_ACTIVE_CREDENTIALS, merchant_id):
        plain = _open(key, merchant_id, row["kind"], bytes(row["value"]), row["key_id"])
        by_kind.setdefault(row["kind"], []).append(plain)

    def opened(kind: str) -> list[bytes]:
        return by_kind.get(kind, [])

    def newest(kind: str) -> bytes:
        values = opened(kind)
        if not values:
            raise CredentialUnreadable(f"merchant {merchant_id!r} has no active {kind}")
        return values[0]

    return MerchantCredentials(
        merchant_id=merchant_id,
        name=merchant["name"],
        endpoint_url=_bound_url(merchant_id, ENDPOINT_URL, merchant[ENDPOINT_URL], opened),
        inbound_secrets=tuple(v.decode() for v in opened(INBOUND_SECRET)),
        inbound_public_keys=tuple(opened(INBOUND_PUBLIC_KEY)),
        outbound_private_key=newest(OUTBOUND_PRIVATE_KEY),
        outbound_secret=newest(OUTBOUND_SECRET).decode(),
        jwks_url=_bound_url(merchant_id, JWKS_URL, merchant[JWKS_URL], opened),
        adapter_secrets=tuple(
            (sender, secret.decode())
            for sender, kind in ADAPTER_SECRETS.items()
            for secret in opened(kind)[:1]
        ),
    )


async def merchant_identity_key(pg: PgConnection, key: Keys, merchant_id: str) -> bytes:
    """The merchant's key for the fraud guard's identity digests (`fraud/identity.py`), made
    on first use under the merchant's lock. Sealed like every credential, and moved with them
    by `keys rotate`: the digests stay comparable across key rotations."""
    values = await pg.fetch(SELECT_ACTIVE_SEALED_OF_KIND, merchant_id, IDENTITY_KEY)
    if not values:
        await _lock_merchant(pg, merchant_id)
        values = await pg.fetch(SELECT_ACTIVE_SEALED_OF_KIND, merchant_id, IDENTITY_KEY)
        if not values:
            made = secrets.token_bytes(IDENTITY_KEY_BYTES)
            sealed = seal(key, made, merchant_id=merchant_id, kind=IDENTITY_KEY)
            await pg.execute(
                INSERT_CREDENTIAL, merchant_id, IDENTITY_KEY, sealed.value, sealed.key_id
            )
            return made
    row = values[0]
    return _open(key, merchant_id, IDENTITY_KEY, row["value"], row["key_id"])


@dataclass(frozen=True)
class Sealing:
    """What `reseal_all` did: values sealed under the current key, URLs bound to their
    merchant, and values that did not open (left as they were)."""

    merchants: int = 0
    values: int = 0
    urls: int = 0
    unreadable: int = 0

    def __add__(self, other: Sealing) -> Sealing:
        return Sealing(
            self.merchants + other.merchants,
            self.values + other.values,
            self.urls + other.urls,
            self.unreadable + other.unreadable,
        )


async def reseal_all(engine: AsyncEngine, key: Keys, *, moving_to: str | None) -> Sealing:
    """Seal under the current key every value stored before key ids and every unbound URL,
    and, with `moving_to` (the current key's id), every value under another key too. One
    transaction per batch of a merchant's rows, never two merchants in one (see the module)."""
    ring = keyring(key)
    assert moving_to in (None, ring.current_id), "values move to the current key only"
    done, after = Sealing(), ""
    while True:
        async with db.connection(engine) as pg:
            batch = await pg.fetch(
                SELECT_MERCHANTS_TO_SEAL, after, moving_to, RESEAL_MERCHANTS_PER_QUERY
            )
        for row in batch:
            done += await _reseal_merchant(engine, ring, row["merchant_id"], moving_to)
        if len(batch) < RESEAL_MERCHANTS_PER_QUERY:
            return done
        after = batch[-1]["merchant_id"]


async def _reseal_merchant(
    engine: AsyncEngine, key: Keys, merchant_id: str, moving_to: str | None
) -> Sealing:
    done, after_credential_id = Sealing(merchants=1), 0
    while True:
        batch, next_after = await db.run_in_transaction(
            engine, _reseal_batch, key, merchant_id, moving_to, after_credential_id
        )
        done += batch
        if next_after is None:
            return done
        after_credential_id = next_after


async def _reseal_batch(
    pg: PgConnection, key: Keys, merchant_id: str, moving_to: str | None, after_credential_id: int
) -> tuple[Sealing, int | None]:
    """Under the merchant's lock: bind its unbound URLs (first batch), and seal up to
    `RESEAL_ROWS_PER_TRANSACTION` of its values after `after_credential_id`. Returns what was
    done and where the next batch starts (None: this merchant is done)."""
    urls = await pg.fetchrow(LOCK_UNBOUND_URLS, merchant_id)
    if urls is None:
        return Sealing(), None
    bound = 0
    for kind in (ENDPOINT_URL, JWKS_URL):
        if after_credential_id == 0 and urls[f"{kind}_unbound"]:
            sealed = seal(key, urls[kind].encode(), merchant_id=merchant_id, kind=kind)
            await pg.execute(INSERT_CREDENTIAL, merchant_id, kind, sealed.value, sealed.key_id)
            bound += 1
    rows = await pg.fetch(
        SELECT_VALUES_TO_SEAL,
        merchant_id,
        moving_to,
        after_credential_id,
        RESEAL_ROWS_PER_TRANSACTION,
    )
    sealed_count = unreadable = 0
    for row in rows:
        kind, stored, sealed_by = row["kind"], bytes(row["value"]), row["key_id"]
        try:
            plain = (
                stored
                if sealed_by is None and kind in PLAIN_BEFORE_KEY_IDS
                else unseal(key, stored, sealed_by, merchant_id=merchant_id, kind=kind)
            )
        except CredentialUnreadable:
            unreadable += 1
            continue
        sealed = seal(key, plain, merchant_id=merchant_id, kind=kind)
        await pg.execute(
            UPDATE_SEALED_VALUE, merchant_id, row["credential_id"], sealed.value, sealed.key_id
        )
        sealed_count += 1
    more = len(rows) == RESEAL_ROWS_PER_TRANSACTION
    return Sealing(values=sealed_count, urls=bound, unreadable=unreadable), (
        rows[-1]["credential_id"] if more else None
    )


async def values_not_under(pg: PgConnection, key_id: str) -> int:
    """How many stored values are sealed under another key than `key_id`, or before key ids."""
    return int(await pg.fetchval(COUNT_VALUES_NOT_UNDER, key_id))


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
    kind = literal_refused_kind(parts.hostname, allow_loopback=True)
    if kind is not None:
        raise MerchantInvalid(
            f"endpoint {url!r} names a {kind} address: PointGuard sends nothing into its own"
            " network"
        )


def _check_jwks_url(url: str) -> None:
    _check_url(url)
    parts = urlsplit(url)
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        raise MerchantInvalid(
            f"JWKS URL {url!r} must be https:// (http:// only to this machine): whoever can"
            " change the keys in transit could sign webhooks"
        )


def _is_loopback(host: str) -> bool:
    return literal_refused_kind(host, allow_loopback=False) == "loopback"


async def _add_credential(
    pg: PgConnection, merchant_id: str, kind: str, sealed: Sealed | None, *, keep: int
) -> None:
    """Add a credential of `kind` (None: none) and retire all but the newest `keep` of that
    kind, under the merchant's lock (so two rotations cannot both keep their own)."""
    await _lock_merchant(pg, merchant_id)
    if sealed is not None:
        await pg.execute(INSERT_CREDENTIAL, merchant_id, kind, sealed.value, sealed.key_id)
    await pg.execute(RETIRE_ALL_BUT_NEWEST, merchant_id, kind, keep)


async def _set_url(
    pg: PgConnection, key: Keys, merchant_id: str, kind: str, url: str | None
) -> None:
    """Set the merchant's URL of `kind` in the clear and sealed (None: neither)."""
    sealed = None if url is None else seal(key, url.encode(), merchant_id=merchant_id, kind=kind)
    await _add_credential(pg, merchant_id, kind, sealed, keep=0 if sealed is None else 1)
    await pg.execute(SET_URL[kind], merchant_id, url)


def _open(key: Keys, merchant_id: str, kind: str, stored: bytes, key_id: str | None) -> bytes:
    """A stored value opened; one stored in the clear before key ids is refused, as not bound
    to its merchant (the server's next start seals it)."""
    if key_id is None and kind in PLAIN_BEFORE_KEY_IDS:
        raise CredentialUnreadable(
            f"merchant {merchant_id!r}: stored {kind} is not sealed yet (stored before key"
            " ids); start the server or run `pointguard keys rotate --resume` to seal it"
        )
    return unseal(key, stored, key_id, merchant_id=merchant_id, kind=kind)


def _bound_url(
    merchant_id: str, kind: str, in_clear: str | None, opened: Callable[[str], list[bytes]]
) -> str | None:
    """The merchant's URL of `kind`, when the clear copy in `merchants` is the sealed one."""
    sealed = opened(kind)
    if (sealed[0].decode() if sealed else None) != in_clear:
        raise CredentialUnreadable(
            f"merchant {merchant_id!r}: its {kind} is not the one sealed for it: changed"
            " outside PointGuard, copied from another merchant, or set before key ids and not"
            " sealed yet (start the server or run `pointguard keys rotate --resume`)"
        )
    return in_clear


async def _lock_merchant(pg: PgConnection, merchant_id: str) -> None:
    if await pg.fetchval(LOCK_MERCHANT, merchant_id) is None:
        raise UnknownMerchant(f"no merchant {merchant_id!r}")
