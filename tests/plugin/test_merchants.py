"""Merchants and their credentials: encrypted at rest, API keys only as hashes, rotation."""

import asyncio
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pointguard import db
from pointguard.config import load_settings
from pointguard.errors import (
    CredentialUnreadable,
    MerchantExists,
    MerchantInvalid,
    SecretKeyInvalid,
    UnknownMerchant,
)
from pointguard.plugin.api_keys import KeyOwner, KeyRole, find_api_key, new_api_key
from pointguard.plugin.merchants import (
    create_merchant,
    merchant_credentials,
    retire_inbound_secret,
    rotate_inbound_secret,
    sender_secret,
    set_adapter_secret,
    set_endpoint,
    set_inbound_public_key,
    set_jwks_url,
)
from pointguard.plugin.secretbox import decrypt, encrypt, load_key
from pointguard.plugin.signatures import (
    new_ed25519_keypair,
    sign_standard_webhook,
    verify_standard_webhook,
)

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()

ALL_CREDENTIALS = """
SELECT kind, value, retired_at FROM merchant_credentials WHERE merchant_id = $1
ORDER BY credential_id
"""


def test_a_sealed_value_opens_only_for_its_merchant_and_kind_under_its_key():
    sealed = encrypt(KEY, b"whsec_abc", merchant_id="m1", kind="inbound_secret")
    assert b"whsec_abc" not in sealed
    assert decrypt(KEY, sealed, merchant_id="m1", kind="inbound_secret") == b"whsec_abc"
    assert sealed != encrypt(KEY, b"whsec_abc", merchant_id="m1", kind="inbound_secret")

    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    other_key = bytes(32)
    for value, merchant_id, kind, key in [
        (tampered, "m1", "inbound_secret", KEY),
        (sealed, "m2", "inbound_secret", KEY),
        (sealed, "m1", "outbound_secret", KEY),
        (sealed, "m1", "inbound_secret", other_key),
        (sealed[:20], "m1", "inbound_secret", KEY),
    ]:
        with pytest.raises(CredentialUnreadable):
            decrypt(key, value, merchant_id=merchant_id, kind=kind)


def test_embedded_mode_makes_a_private_key_file_once_and_reuses_it(tmp_path):
    settings = load_settings({"POINTGUARD_DATA_DIR": str(tmp_path / "data")})
    key = load_key(settings)
    key_file = tmp_path / "data" / "secret.key"
    assert len(key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert base64.b64decode(key_file.read_text()) == key
    assert load_key(settings) == key
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]


def test_a_key_from_the_environment_is_used_and_a_bad_one_refused_clearly(tmp_path):
    def settings(secret_key: str):
        return load_settings(
            {"POINTGUARD_SECRET_KEY": secret_key, "POINTGUARD_DATA_DIR": str(tmp_path)}
        )

    assert load_key(settings(KEY_B64)) == KEY
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(SecretKeyInvalid, match="POINTGUARD_SECRET_KEY decodes to 16 bytes"):
        load_key(settings(short))
    with pytest.raises(SecretKeyInvalid, match="POINTGUARD_SECRET_KEY is not valid base64") as e:
        load_key(settings("not base64!"))
    assert "not base64!" not in str(e.value)
    assert not (tmp_path / "secret.key").exists()


async def test_create_merchant_stores_no_plaintext_and_its_credentials_work(engine, run, merchant):
    made = await run(
        create_merchant,
        KEY,
        "Acme Shop",
        endpoint_url="https://acme.test/hooks",
        merchant_id=merchant,
    )
    assert made.merchant_id == merchant
    assert made.webhook_secret.startswith("whsec_")
    assert made.outbound_webhook_secret.startswith("whsec_")
    assert made.api_key.startswith("pgk_") and len(made.api_key) == 36
    assert made.api_key not in repr(made) and made.webhook_secret not in repr(made)

    async with db.connection(engine) as pg:
        rows = await pg.fetch(ALL_CREDENTIALS, merchant)
    assert sorted(r["kind"] for r in rows) == [
        "endpoint_url",  # sealed, bound to the merchant like the secrets
        "inbound_secret",
        "outbound_private_key",
        "outbound_secret",
    ]
    plaintexts = [made.api_key, made.webhook_secret, made.outbound_webhook_secret]
    raw_secrets = [base64.b64decode(s.removeprefix("whsec_")) for s in plaintexts[1:]]
    for row in rows:
        for secret in [s.encode() for s in plaintexts] + raw_secrets:
            assert secret not in row["value"], row["kind"]
    async with db.connection(engine) as pg:
        stored_keys = await pg.fetch(
            "SELECT key_hash, role, name FROM merchant_api_keys WHERE merchant_id = $1", merchant
        )
    assert [(k["key_hash"], k["role"], k["name"]) for k in stored_keys] == [
        (hashlib.sha256(made.api_key.encode()).digest(), "storefront", "storefront")
    ]

    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
        assert await find_api_key(pg, made.api_key) == KeyOwner(
            merchant, KeyRole.STOREFRONT, "storefront"
        )
        other_last = "y" if made.api_key.endswith("x") else "x"  # a key one letter off
        assert await find_api_key(pg, made.api_key[:-1] + other_last) is None
        with pytest.raises(CredentialUnreadable):
            await merchant_credentials(pg, bytes(32), merchant)
    assert credentials is not None
    assert (credentials.name, credentials.endpoint_url) == ("Acme Shop", "https://acme.test/hooks")
    assert credentials.inbound_secrets == (made.webhook_secret,)
    assert credentials.inbound_public_keys == ()
    assert credentials.outbound_secret == made.outbound_webhook_secret
    assert made.webhook_secret not in repr(credentials)

    # What a storefront does with the public key and secret it was given: verify a delivery.
    signature = sign_standard_webhook(
        secret=credentials.outbound_secret,
        private_key=credentials.outbound_private_key,
        webhook_id="msg_1",
        timestamp=1_700_000_000,
        body=b"{}",
    )
    for secrets, public_keys in [
        ([made.outbound_webhook_secret], []),
        ([], [base64.b64decode(made.outbound_public_key)]),
    ]:
        verify_standard_webhook(
            secrets=secrets,
            public_keys=public_keys,
            webhook_id="msg_1",
            timestamp="1700000000",
            signature_header=signature,
            body=b"{}",
            now=datetime.fromtimestamp(1_700_000_000, UTC),
        )


async def test_rotation_keeps_two_active_secrets_and_retires_the_oldest(engine, run, merchant):
    first = (await run(create_merchant, KEY, "Rotating", merchant_id=merchant)).webhook_secret
    second = await run(rotate_inbound_secret, KEY, merchant)
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
    assert credentials is not None and credentials.inbound_secrets == (second, first)

    third = await run(rotate_inbound_secret, KEY, merchant)
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
        rows = await pg.fetch(ALL_CREDENTIALS, merchant)
    assert credentials is not None and credentials.inbound_secrets == (third, second)
    inbound = [r for r in rows if r["kind"] == "inbound_secret"]
    assert [r["retired_at"] is not None for r in inbound] == [True, False, False]

    assert await run(retire_inbound_secret, merchant) == 1
    assert await run(retire_inbound_secret, merchant) == 0
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
    assert credentials is not None and credentials.inbound_secrets == (third,)

    # Racing rotations take turns on the merchant's row: never more than two stay active.
    racing = await asyncio.gather(*(run(rotate_inbound_secret, KEY, merchant) for _ in range(4)))
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
    assert credentials is not None and len(credentials.inbound_secrets) == 2
    assert set(credentials.inbound_secrets) <= set(racing)


async def test_public_key_endpoint_and_unknown_or_invalid_input(engine, run, merchant):
    await run(create_merchant, KEY, "Keys", merchant_id=merchant)
    _, old_public = new_ed25519_keypair()
    _, new_public = new_ed25519_keypair()
    await run(set_inbound_public_key, KEY, merchant, old_public)
    await run(set_inbound_public_key, KEY, merchant, new_public)
    await run(set_endpoint, KEY, merchant, "http://localhost:9000/hooks")
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
        assert await merchant_credentials(pg, KEY, "m-nobody") is None
    assert credentials is not None
    assert credentials.inbound_public_keys == (new_public,)
    assert credentials.endpoint_url == "http://localhost:9000/hooks"

    with pytest.raises(MerchantExists):
        await run(create_merchant, KEY, "Again", merchant_id=merchant)
    with pytest.raises(UnknownMerchant):
        await run(rotate_inbound_secret, KEY, "m-nobody")
    with pytest.raises(UnknownMerchant):
        await run(set_endpoint, KEY, "m-nobody", "https://x.test/")
    with pytest.raises(MerchantInvalid):
        await run(set_endpoint, KEY, merchant, "ftp://x.test/")
    with pytest.raises(MerchantInvalid):
        await run(set_inbound_public_key, KEY, merchant, b"short")
    with pytest.raises(MerchantInvalid):
        await run(create_merchant, KEY, "Bad id", merchant_id="no spaces/or slashes")
    with pytest.raises(MerchantInvalid):
        await run(create_merchant, KEY, "   ")


async def test_a_generated_id_is_the_names_slug_and_a_suffix(run):
    made = await run(create_merchant, KEY, "  Café Ünïcorn & Co!  ")
    slug, _, suffix = made.merchant_id.rpartition("-")
    assert (made.name, slug, len(suffix)) == ("Café Ünïcorn & Co!", "cafe-unicorn-co", 6)
    assert (await run(create_merchant, KEY, "Café Ünïcorn & Co!")).merchant_id != made.merchant_id


def pointguard(database_url, *args, secret_key=KEY_B64, stdin=None):
    env = {
        **os.environ,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": secret_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "pointguard.cli", "merchant", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_cli_creates_a_merchant_as_json_sets_its_endpoint_and_rotates(
    engine, database_url
):
    created = pointguard(database_url, "create", "CLI Shop", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(made, dict)
    merchant = made["merchant_id"]
    assert merchant.startswith("cli-shop-")
    assert made["webhook_secret"].startswith("whsec_") and made["api_key"].startswith("pgk_")
    assert len(base64.b64decode(made["outbound_public_key"])) == 32

    endpoint = pointguard(database_url, "set-endpoint", merchant, "https://cli.test/hooks")
    assert endpoint.returncode == 0, endpoint.stderr
    rotated = pointguard(database_url, "rotate-secret", merchant)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()

    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
        owner = await find_api_key(pg, made["api_key"])
        assert owner is not None and owner.merchant_id == merchant
    assert credentials is not None
    assert credentials.inbound_secrets == (new_secret, made["webhook_secret"])
    assert credentials.endpoint_url == "https://cli.test/hooks"

    readable = pointguard(database_url, "create", "Readable Shop")
    assert readable.returncode == 0, readable.stderr
    assert "merchant readable-shop-" in readable.stdout and "not shown again" in readable.stdout

    unknown = pointguard(database_url, "rotate-secret", "m-nobody")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "no merchant 'm-nobody'")
    bad_key = pointguard(database_url, "create", "Nope", "--json", secret_key="c2hvcnQ=")
    assert bad_key.returncode == 1 and bad_key.stdout == ""
    assert "POINTGUARD_SECRET_KEY decodes to 5 bytes" in bad_key.stderr


async def test_a_sender_chosen_secret_is_stored_sealed_and_replaces_the_last(engine, run, merchant):
    made = await run(create_merchant, KEY, "Chosen", merchant_id=merchant)
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
    # None chosen yet: the key derived for the sender from the inbound secret.
    assert credentials.hmac_secrets("shopify") == (sender_secret(made.webhook_secret, "shopify"),)

    await run(set_adapter_secret, KEY, merchant, "shopify", "shpss_first")
    await run(set_adapter_secret, KEY, merchant, "shopify", "shpss_second")
    await run(set_adapter_secret, KEY, merchant, "woocommerce", "wc-secret")
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
        rows = await pg.fetch(ALL_CREDENTIALS, merchant)
    assert credentials.hmac_secrets("shopify") == ("shpss_second",)
    assert credentials.hmac_secrets("woocommerce") == ("wc-secret",)
    assert credentials.inbound_secrets == (made.webhook_secret,)
    assert "shpss_second" not in repr(credentials)
    sealed = {r["kind"]: r for r in rows if r["kind"] in ("shopify_secret", "woocommerce_secret")}
    assert b"shpss" not in sealed["shopify_secret"]["value"]
    assert b"wc-secret" not in sealed["woocommerce_secret"]["value"]
    shopify_rows = [r["retired_at"] is None for r in rows if r["kind"] == "shopify_secret"]
    assert shopify_rows == [False, True]  # the first one retired, the second active

    for sender, secret in [
        ("saleor", "x"),
        ("shopify", ""),
        ("shopify", " padded "),
        ("shopify", "x" * 1001),
    ]:
        with pytest.raises(MerchantInvalid):
            await run(set_adapter_secret, KEY, merchant, sender, secret)
    with pytest.raises(UnknownMerchant):
        await run(set_adapter_secret, KEY, "m-nobody", "shopify", "x")


async def test_a_jwks_url_is_https_or_to_this_machine(engine, run, merchant):
    await run(create_merchant, KEY, "Keys", merchant_id=merchant)
    for url in [
        "https://shop.example/.well-known/jwks.json",
        "http://127.0.0.1:8001/.well-known/jwks.json",
        "http://localhost/jwks.json",
        "http://[::1]:9000/jwks.json",
    ]:
        await run(set_jwks_url, KEY, merchant, url)
        async with db.connection(engine) as pg:
            assert (await merchant_credentials(pg, KEY, merchant)).jwks_url == url
    for url in ["http://shop.example/jwks.json", "ftp://shop.example/jwks.json", "https://"]:
        with pytest.raises(MerchantInvalid):
            await run(set_jwks_url, KEY, merchant, url)
    await run(set_jwks_url, KEY, merchant, None)
    async with db.connection(engine) as pg:
        assert (await merchant_credentials(pg, KEY, merchant)).jwks_url is None
    with pytest.raises(UnknownMerchant):
        await run(set_jwks_url, KEY, "m-nobody", "https://shop.example/jwks.json")


async def test_the_cli_sets_a_jwks_url_and_a_chosen_secret_from_stdin(
    engine, run, merchant, database_url
):
    await run(create_merchant, KEY, "CLI Keys", merchant_id=merchant)
    url = "https://shop.example/.well-known/jwks.json"
    jwks = pointguard(database_url, "set-jwks", merchant, url)
    assert jwks.returncode == 0, jwks.stderr
    secret = pointguard(
        database_url, "set-adapter-secret", merchant, "shopify", "-", stdin="shpss_from_stdin\n"
    )
    assert secret.returncode == 0, secret.stderr
    assert "shpss_from_stdin" not in secret.stdout + secret.stderr
    async with db.connection(engine) as pg:
        credentials = await merchant_credentials(pg, KEY, merchant)
    assert credentials.jwks_url == url
    assert credentials.hmac_secrets("shopify") == ("shpss_from_stdin",)

    refused = pointguard(database_url, "set-jwks", merchant, "http://shop.example/jwks.json")
    assert refused.returncode == 1 and "must be https://" in refused.stderr
    wrong = pointguard(database_url, "set-adapter-secret", merchant, "magento", "-", stdin="x")
    assert wrong.returncode == 1 and "not one of shopify, woocommerce" in wrong.stderr


async def test_the_cli_sets_a_senders_ed25519_public_key(engine, run, merchant, database_url):
    await run(create_merchant, KEY, "CLI Sender Key", merchant_id=merchant)
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    done = pointguard(
        database_url, "set-sender-key", merchant, "whpk_" + base64.b64encode(public).decode()
    )
    assert done.returncode == 0, done.stderr
    async with db.connection(engine) as pg:
        assert (await merchant_credentials(pg, KEY, merchant)).inbound_public_keys == (public,)

    short = pointguard(database_url, "set-sender-key", merchant, base64.b64encode(b"x").decode())
    assert short.returncode == 1 and "32 raw bytes" in short.stderr
    garbled = pointguard(database_url, "set-sender-key", merchant, "not base64!")
    assert garbled.returncode == 1 and "not base64" in garbled.stderr
    async with db.connection(engine) as pg:
        assert (await merchant_credentials(pg, KEY, merchant)).inbound_public_keys == (public,)


async def test_the_cli_makes_lists_and_revokes_named_api_keys(engine, run, database_url):
    made = json.loads(pointguard(database_url, "create", "Keyed Shop", "--json").stdout)
    merchant = made["merchant_id"]
    assert made["customer_token_secret"].startswith("customer_")

    added = pointguard(database_url, "add-key", merchant, "--role", "reviewer", "--name", "alice")
    assert added.returncode == 0, added.stderr
    alice = added.stdout.strip()
    async with db.connection(engine) as pg:
        assert await find_api_key(pg, alice) == KeyOwner(merchant, KeyRole.REVIEWER, "alice")
    with pytest.raises(MerchantInvalid, match="already has a live key named 'alice'"):
        await run(new_api_key, merchant, KeyRole.ADMIN, "alice")

    revoked = pointguard(database_url, "revoke-key", merchant, "alice")
    assert revoked.returncode == 0, revoked.stderr
    async with db.connection(engine) as pg:
        assert await find_api_key(pg, alice) is None
    listed = json.loads(pointguard(database_url, "keys", merchant, "--json").stdout)
    assert [(k["name"], k["role"], k["revoked_at"] is None) for k in listed] == [
        ("storefront", "storefront", True),
        ("alice", "reviewer", False),
    ]
