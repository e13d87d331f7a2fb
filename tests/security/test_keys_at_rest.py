"""Keys at rest (issue 9, item 10): key files others may read are refused, the data folder is
private, every sealed value names its key so that `pointguard keys rotate` can move them all
to a new one (resumably), and the values that are not secret are bound to their merchant."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from pointguard import db
from pointguard.config import load_settings
from pointguard.errors import CredentialUnreadable, SecretKeyInvalid
from pointguard.plugin import secretbox
from pointguard.plugin.merchants import (
    create_merchant,
    merchant_credentials,
    reseal_all,
    set_endpoint,
    set_inbound_public_key,
    set_jwks_url,
)
from pointguard.plugin.secretbox import key_id, load_keyring, switch_current_key
from pointguard.plugin.signatures import new_ed25519_keypair
from tests.cli_helpers import run_cli

KEY = os.urandom(32)
ROWS = """
SELECT kind, value, key_id FROM merchant_credentials WHERE merchant_id = $1
ORDER BY credential_id
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder that does not exist yet, two levels below a fresh temporary folder."""
    top = Path(tempfile.mkdtemp(prefix="pointguard-test-keys-"))
    yield top / "var" / "pointguard"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """A database of its own on the test server: a rotation visits every merchant there is."""
    name = f"keys_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(db.libpq_url(database_url))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlsplit(database_url)._replace(path=f"/{name}").geturl()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def cli_env(database_url: str, data_dir: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTGUARD_")}
    return {
        **env,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_DATA_DIR": str(data_dir),
        **more,
    }


def test_a_key_file_that_others_may_read_is_refused_with_the_fix(data_dir):
    settings = load_settings({"POINTGUARD_DATA_DIR": str(data_dir)})
    load_keyring(settings)  # makes the key file, private
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for mode in (0o644, 0o640, 0o602):
        key_file.chmod(mode)
        with pytest.raises(SecretKeyInvalid, match=f"chmod 600 {key_file}"):
            load_keyring(settings)
    key_file.chmod(0o600)
    (data_dir / "keys").mkdir()
    old = data_dir / "keys" / "old.key"
    old.write_text(base64.b64encode(os.urandom(32)).decode())
    old.chmod(0o644)
    with pytest.raises(SecretKeyInvalid, match=f"chmod 600 {old}"):
        load_keyring(settings)


async def test_the_cli_refuses_an_exposed_key_and_makes_a_private_data_folder(
    database_url, data_dir
):
    env = cli_env(database_url, data_dir)
    made = run_cli(env, "merchant", "create", "Private Shop")
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "secret.key").stat().st_mode) == 0o600

    (data_dir / "secret.key").chmod(0o644)
    refused = run_cli(env, "merchant", "create", "Exposed Shop")
    assert refused.returncode == 1
    assert "may be read by other users (mode 0644)" in refused.stderr
    assert f"chmod 600 {data_dir / 'secret.key'}" in refused.stderr


async def test_values_name_their_key_and_old_ones_still_open_and_get_sealed(engine, run, merchant):
    made = await run(create_merchant, KEY, "Old Rows", merchant_id=merchant)
    _, public = new_ed25519_keypair()
    await run(set_inbound_public_key, KEY, merchant, public)
    async with db.connection(engine) as pg:
        rows = await pg.fetch(ROWS, merchant)
        assert {r["key_id"] for r in rows} == {key_id(KEY)}
        # As stored before key ids: no key id, the public key in the clear.
        await pg.execute(
            "UPDATE merchant_credentials SET key_id = NULL WHERE merchant_id = $1", merchant
        )
        await pg.execute(
            "UPDATE merchant_credentials SET value = $2"
            " WHERE merchant_id = $1 AND kind = 'inbound_public_key'",
            merchant,
            public,
        )
        with pytest.raises(CredentialUnreadable, match="inbound_public_key is not sealed yet"):
            await merchant_credentials(pg, KEY, merchant)
        await pg.execute(
            "DELETE FROM merchant_credentials"
            " WHERE merchant_id = $1 AND kind = 'inbound_public_key'",
            merchant,
        )
        old_rows = await merchant_credentials(pg, KEY, merchant)  # secrets open under each key
        assert old_rows is not None and old_rows.inbound_secrets == (made.webhook_secret,)
        await pg.execute(
            "INSERT INTO merchant_credentials (merchant_id, kind, value) VALUES ($1, $2, $3)",
            merchant,
            "inbound_public_key",
            public,
        )

    await reseal_all(engine, KEY, moving_to=None)  # what the server does at its start
    async with db.connection(engine) as pg:
        rows = await pg.fetch(ROWS, merchant)
        sealed = await merchant_credentials(pg, KEY, merchant)
    assert {r["key_id"] for r in rows} == {key_id(KEY)}
    assert public not in next(r["value"] for r in rows if r["kind"] == "inbound_public_key")
    assert sealed is not None and sealed.inbound_public_keys == (public,)


async def test_public_keys_and_urls_copied_from_another_merchant_are_refused(engine, run):
    shops = [(await run(create_merchant, KEY, name)).merchant_id for name in ("Ann's", "Bob's")]
    for shop in shops:
        _, public = new_ed25519_keypair()
        await run(set_inbound_public_key, KEY, shop, public)
        await run(set_endpoint, KEY, shop, f"https://{shop}.test/hooks")
        await run(set_jwks_url, KEY, shop, f"https://{shop}.test/jwks.json")
    ann, bob = shops

    copies = {
        "endpoint URL": "UPDATE merchants SET endpoint_url = (SELECT endpoint_url FROM merchants"
        " WHERE merchant_id = $2) WHERE merchant_id = $1",
        "JWKS URL": "UPDATE merchants SET jwks_url = (SELECT jwks_url FROM merchants"
        " WHERE merchant_id = $2) WHERE merchant_id = $1",
        "public key": "UPDATE merchant_credentials SET value = (SELECT value FROM"
        " merchant_credentials WHERE merchant_id = $2 AND kind = 'inbound_public_key'"
        " AND retired_at IS NULL) WHERE merchant_id = $1 AND kind = 'inbound_public_key'"
        " AND retired_at IS NULL",
    }
    for what, copy in copies.items():
        with pytest.raises(RolledBack):
            async with db.connection(engine) as pg, pg.transaction():
                await pg.execute(copy, ann, bob)
                with pytest.raises(CredentialUnreadable, match=repr(ann)):
                    await merchant_credentials(pg, KEY, ann)
                assert (await merchant_credentials(pg, KEY, bob)) is not None, what
                raise RolledBack  # each copy alone


class RolledBack(Exception):
    """Ends a transaction that must leave nothing behind."""


async def test_keys_rotate_moves_every_value_to_a_new_key_and_resumes(fresh_database, data_dir):
    env = cli_env(fresh_database, data_dir)
    made = []
    for name in ("First", "Second"):
        created = run_cli(env, "merchant", "create", name, "--endpoint", "https://x.test/hooks")
        assert created.returncode == 0, created.stderr
        made.append(created.stdout.split()[1])
    settings = load_settings({"POINTGUARD_DATA_DIR": str(data_dir)})
    old_id = load_keyring(settings).current_id
    before = {m: await credentials(fresh_database, settings, m) for m in made}

    rotated = run_cli(env, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_id = load_keyring(settings).current_id
    assert new_id != old_id and f"current key: {new_id}" in rotated.stdout
    assert "re-sealed 8 values and bound 0 URLs of 2 merchants; 0 did not open" in rotated.stdout
    assert list((data_dir / "keys").iterdir()) == []  # the old key is gone: nothing needs it
    assert await key_ids(fresh_database) == {new_id}
    assert {m: await credentials(fresh_database, settings, m) for m in made} == before

    # Stopped right after the switch: the new key is current, the old one kept, no value moved.
    newer = os.urandom(32)
    (data_dir / "keys" / f"{new_id}.key").write_text((data_dir / "secret.key").read_text())
    (data_dir / "keys" / f"{new_id}.key").chmod(0o600)
    (data_dir / "secret.key").write_text(base64.b64encode(newer).decode())
    assert {m: await credentials(fresh_database, settings, m) for m in made} == before
    resumed = run_cli(env, "keys", "rotate", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert await key_ids(fresh_database) == {key_id(newer)}
    assert list((data_dir / "keys").iterdir()) == []
    assert {m: await credentials(fresh_database, settings, m) for m in made} == before
    again = run_cli(env, "keys", "rotate", "--resume")  # nothing left: nothing done
    assert "re-sealed 0 values and bound 0 URLs of 0 merchants" in again.stdout


async def test_keys_rotate_with_the_key_in_the_environment(fresh_database, data_dir):
    old, new = os.urandom(32), os.urandom(32)
    env = cli_env(fresh_database, data_dir, POINTGUARD_SECRET_KEY=base64.b64encode(old).decode())
    created = run_cli(env, "merchant", "create", "Env Shop")
    assert created.returncode == 0, created.stderr
    refused = run_cli(env, "keys", "rotate")
    assert refused.returncode == 1 and "give the new key with --new-key-file" in refused.stderr

    rotated = run_cli_stdin(
        env, base64.b64encode(new).decode(), "keys", "rotate", "--new-key-stdin"
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "now set POINTGUARD_SECRET_KEY to the new key" in rotated.stdout
    assert await key_ids(fresh_database) == {key_id(new)}
    # Until the environment is switched, the old key alone opens nothing.
    settings = load_settings(
        {
            "POINTGUARD_SECRET_KEY": base64.b64encode(new).decode(),
            "POINTGUARD_DATA_DIR": str(data_dir),
        }
    )
    merchant_id = created.stdout.split()[1]
    assert (await credentials(fresh_database, settings, merchant_id))[0] == "Env Shop"


def run_cli_stdin(env, stdin: str, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "pointguard.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def key_ids(database_url: str) -> set[str | None]:
    pg = await asyncpg.connect(db.libpq_url(database_url))
    try:
        rows = await pg.fetch("SELECT DISTINCT key_id FROM merchant_credentials")
    finally:
        await pg.close()
    return {r["key_id"] for r in rows}


async def credentials(database_url: str, settings, merchant_id: str) -> tuple[object, ...]:
    pg = await asyncpg.connect(db.libpq_url(database_url))
    try:
        found = await merchant_credentials(pg, load_keyring(settings), merchant_id)
    finally:
        await pg.close()
    assert found is not None
    return (
        found.name,
        found.endpoint_url,
        found.inbound_secrets,
        found.outbound_private_key,
        found.outbound_secret,
    )


def test_a_running_keyring_reads_the_files_again_for_a_key_it_does_not_know(data_dir, monkeypatch):
    settings = load_settings({"POINTGUARD_DATA_DIR": str(data_dir)})
    running = load_keyring(settings)
    old = running.current
    new = os.urandom(32)
    switch_current_key(settings, new)  # what `keys rotate` does first, in another process
    monkeypatch.setattr(secretbox, "RELOAD_INTERVAL_S", 0.0)
    assert running.key(key_id(new)) == new
    assert (running.current, running.key(key_id(old))) == (new, old)
    assert running.key("0" * 16) is None
