"""Credentials at rest: AES-GCM under one 32-byte key, each value bound to its merchant and kind.

A sealed value is `nonce (12 random bytes) || ciphertext || tag`. The associated data names the
merchant and the credential kind, so a value copied to another merchant's row, or to another
kind of credential, fails to decrypt instead of quietly becoming someone else's secret.

The key comes from `POINTGUARD_SECRET_KEY` (base64 of 32 bytes). With none set, the first run
makes one in `data_dir / "secret.key"` (mode 0600) and every later run reads it back, so an
embedded installation needs no setup; losing that file makes the stored credentials unreadable.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pointguard.config import Settings
from pointguard.errors import CredentialUnreadable, SecretKeyInvalid

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_FILE_NAME = "secret.key"
KEY_FILE_MODE = 0o600
AAD_LABEL = b"pointguard.credential.v1"
MAKE_KEY_HINT = (
    "make one with: python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
)


def load_key(settings: Settings) -> bytes:
    """The credential key: `settings.secret_key` when set, else the data folder's key file
    (made on first use)."""
    if settings.secret_key is not None:
        return _decode_key(settings.secret_key, "POINTGUARD_SECRET_KEY")
    path = settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return _decode_key(path.read_text(), str(path))


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


def _associated_data(merchant_id: str, kind: str) -> bytes:
    # NUL cannot occur in PostgreSQL text, so the three parts cannot run into each other.
    return b"\x00".join((AAD_LABEL, merchant_id.encode(), kind.encode()))


def _decode_key(text: str, source: str) -> bytes:
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


def _create_key_file(path: Path) -> None:
    """Write a fresh key to `path` unless another process got there first.

    The key is written in full to a private temporary file and then hard-linked into place,
    which fails if the name exists: a racing process never reads a half-written key, and two
    first runs agree on one key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
            file.flush()
            os.fsync(file.fileno())
        # FileExistsError: another process made the key first, and everyone uses that one.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
