"""Credentials at rest: AES-GCM under a keyring, each value bound to its merchant and kind.

A sealed value is `nonce (12 random bytes) || ciphertext || tag`, stored with the id of the key
that sealed it. The associated data names the merchant and the credential kind, so a value
copied to another merchant's row, or to another kind of credential, fails to decrypt instead of
quietly becoming someone else's secret.

Rules this module enforces:
- One key seals (the current key: `POINTGUARD_SECRET_KEY`, else `data_dir/secret.key`, made
  on first run); every key of the keyring opens. The others are old keys kept while
  `pointguard keys rotate` re-encrypts under a new one (`data_dir/keys/*.key`,
  `POINTGUARD_SECRET_KEYS`). Losing a key makes the values sealed under it unreadable.
- A key's id is a fingerprint of the key itself, so an id cannot name the wrong key and two
  processes agree on ids without a registry. A value stored before key ids (id None) is tried
  under each key, current first.
- A key file that others may read or write is refused, with the `chmod` that fixes it: tests
  and services often run as root, so the mode bits are checked, not whether `open` works.
- A key id that the keyring does not know makes it read its files again (at most once per
  `RELOAD_INTERVAL_S`): a running server opens values that a rotation sealed under a new key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pointguard.config import Settings
from pointguard.db import make_private_dir
from pointguard.errors import CredentialUnreadable, SecretKeyInvalid

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_FILE_NAME = "secret.key"
KEYS_DIR_NAME = "keys"  # old keys, kept until no stored value is sealed under them
KEY_FILE_SUFFIX = ".key"
KEY_FILE_MODE = 0o600
OTHERS_MAY_ACCESS = 0o077  # group and others: any of read, write, execute
KEY_ID_CHARS = 16  # hex: 64 bits of SHA-256, ample to tell a handful of keys apart
KEY_ID_LABEL = b"pointguard.key-id.v1\x00"
RELOAD_INTERVAL_S = 1.0
AAD_LABEL = b"pointguard.credential.v1"
MAKE_KEY_HINT = (
    "make one with: python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
)


def key_id(key: bytes) -> str:
    """The id stored beside each value that `key` seals: a fingerprint that reveals nothing of
    the key."""
    return hashlib.sha256(KEY_ID_LABEL + key).hexdigest()[:KEY_ID_CHARS]


class Keyring:
    """The current key, which seals, and every key that still opens; `settings` given, the
    files are read again when a value names a key id not known yet (see the module)."""

    def __init__(
        self, current: bytes, others: tuple[bytes, ...] = (), *, settings: Settings | None = None
    ) -> None:
        self._settings = settings
        self._loaded_at_s = time.monotonic()
        self._set(current, others)

    def _set(self, current: bytes, others: tuple[bytes, ...]) -> None:
        self.current = current
        self.current_id = key_id(current)
        self._keys = {key_id(key): key for key in (current, *others)}

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id this keyring opens, the current one first."""
        return tuple(self._keys)

    def key(self, wanted_id: str) -> bytes | None:
        """The key with this id, reading the key files again first if it is not known."""
        found = self._keys.get(wanted_id)
        if found is None and self._settings is not None:
            now_s = time.monotonic()
            if now_s - self._loaded_at_s >= RELOAD_INTERVAL_S:
                self._loaded_at_s = now_s
                self._set(*_read_keys(self._settings))
                found = self._keys.get(wanted_id)
        return found

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys.values())


# Where a key is wanted, a bare key stands for the keyring of that key alone.
Keys = Keyring | bytes


def keyring(keys: Keys) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring(keys)


@dataclass(frozen=True)
class Sealed:
    """A value as stored: the sealed bytes and the id of the key that sealed them."""

    value: bytes
    key_id: str


def load_keyring(settings: Settings) -> Keyring:
    """The keyring the module describes, made on first use in embedded mode."""
    return Keyring(*_read_keys(settings), settings=settings)


def load_key(settings: Settings) -> bytes:
    """The current key alone (see `load_keyring`)."""
    return _read_keys(settings)[0]


def seal(keys: Keys, plaintext: bytes, *, merchant_id: str, kind: str) -> Sealed:
    """Seal `plaintext` under the current key as merchant `merchant_id`'s `kind`."""
    ring = keyring(keys)
    sealed = encrypt(ring.current, plaintext, merchant_id=merchant_id, kind=kind)
    return Sealed(sealed, ring.current_id)


def unseal(
    keys: Keys, stored: bytes, sealed_by: str | None, *, merchant_id: str, kind: str
) -> bytes:
    """Open a stored value sealed under key id `sealed_by` (None: stored before key ids, so
    each key is tried), or raise `CredentialUnreadable`."""
    ring = keyring(keys)
    if sealed_by is None:
        for each in ring:
            with contextlib.suppress(CredentialUnreadable):
                return decrypt(each, stored, merchant_id=merchant_id, kind=kind)
        return decrypt(ring.current, stored, merchant_id=merchant_id, kind=kind)  # its error
    key = ring.key(sealed_by)
    if key is None:
        raise CredentialUnreadable(
            f"merchant {merchant_id!r}: stored {kind} is sealed under key {sealed_by}, which is"
            " not in the keyring (secret.key, keys/, POINTGUARD_SECRET_KEY(S))"
        )
    return decrypt(key, stored, merchant_id=merchant_id, kind=kind)


def encrypt(key: bytes, plaintext: bytes, *, merchant_id: str, kind: str) -> bytes:
    """Seal `plaintext` as merchant `merchant_id`'s credential of `kind`."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _associated_data(merchant_id, kind))


def decrypt(key: bytes, sealed: bytes, *, merchant_id: str, kind: str) -> bytes:
    """Open a value sealed by `encrypt` for this same merchant and kind, or raise
    `CredentialUnreadable`."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise CredentialUnreadable(
            f"merchant {merchant_id!r}: stored {kind} is too short to be an encrypted value"
        )
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _associated_data(merchant_id, kind))
    except InvalidTag as error:
        raise CredentialUnreadable(
            f"merchant {merchant_id!r}: stored {kind} does not decrypt: the secret key is not"
            " the one it was stored with, or the value was altered or copied from elsewhere"
        ) from error


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as its files and `POINTGUARD_SECRET_KEY` hold it."""
    return base64.b64encode(key).decode()


def decode_key(text: str, source: str) -> bytes:
    """A key from its base64 text, or `SecretKeyInvalid` naming `source` (never the text)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SecretKeyInvalid(
            f"{source} is not valid base64; it must be the base64 of {KEY_BYTES} random bytes"
            f" ({MAKE_KEY_HINT})"
        ) from error
    if len(key) != KEY_BYTES:
        raise SecretKeyInvalid(
            f"{source} decodes to {len(key)} bytes; it must be the base64 of exactly"
            f" {KEY_BYTES} random bytes ({MAKE_KEY_HINT})"
        )
    return key


def current_key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def old_key_file(settings: Settings, old_key: bytes) -> Path:
    """Where an old key waits, named by its id, until no value is sealed under it."""
    return settings.data_dir / KEYS_DIR_NAME / f"{key_id(old_key)}{KEY_FILE_SUFFIX}"


def write_key_file(path: Path, key: bytes, *, replace: bool) -> None:
    """Write `key` to `path` (mode 0600) in one step: in full to a private temporary file, then
    moved into place (`replace`) or hard-linked, which leaves an existing file alone: a racing
    process never reads a half-written key, and two first runs agree on one key."""
    make_private_dir(path.parent)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(encode_key(key) + "\n")
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(draft, path)
        else:
            # FileExistsError: another process made the key first, and everyone uses that one.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def switch_current_key(settings: Settings, new: bytes) -> None:
    """Make `new` the current key of the data folder, the old one kept in `keys/` first, so
    that a crash between the two steps loses no key."""
    old = _read_keys(settings)[0]
    if new != old:
        write_key_file(old_key_file(settings, old), old, replace=False)
        write_key_file(current_key_file(settings), new, replace=True)


def forget_old_keys(settings: Settings, keep_id: str) -> list[Path]:
    """Delete the key files in `keys/` other than `keep_id`'s (once no value needs them);
    returns the files deleted."""
    keys_dir = settings.data_dir / KEYS_DIR_NAME
    gone = [
        path
        for path in sorted(keys_dir.glob(f"*{KEY_FILE_SUFFIX}"))
        if key_id(read_key_file(path)) != keep_id
    ]
    for path in gone:
        path.unlink()
    return gone


def _read_keys(settings: Settings) -> tuple[bytes, tuple[bytes, ...]]:
    """(current key, other keys) from the environment and the data folder."""
    if settings.secret_key is not None:
        current = decode_key(settings.secret_key, "POINTGUARD_SECRET_KEY")
    else:
        path = current_key_file(settings)
        if not path.exists():
            write_key_file(path, new_key(), replace=False)
        current = read_key_file(path)
    others = [
        decode_key(text, f"key {n} of POINTGUARD_SECRET_KEYS")
        for n, text in enumerate(settings.old_secret_keys, start=1)
    ]
    keys_dir = settings.data_dir / KEYS_DIR_NAME
    if keys_dir.is_dir():
        others += [read_key_file(p) for p in sorted(keys_dir.glob(f"*{KEY_FILE_SUFFIX}"))]
    return current, tuple(others)


def read_key_file(path: Path) -> bytes:
    """The key in `path`, refused if other users may read or change the file."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & OTHERS_MAY_ACCESS:
        raise SecretKeyInvalid(
            f"{path} may be read by other users (mode {mode:04o}); make it private with:"
            f" chmod 600 {path}"
        )
    return decode_key(path.read_text(), str(path))


def _associated_data(merchant_id: str, kind: str) -> bytes:
    # NUL cannot occur in PostgreSQL text, so the three parts cannot run into each other.
    return b"\x00".join((AAD_LABEL, merchant_id.encode(), kind.encode()))
