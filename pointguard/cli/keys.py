"""`pointguard keys`: the keys that seal merchants' credentials at rest (`plugin/secretbox.py`).

`rotate` moves every stored value to a new key, and is safe to stop and run again at any
point: the new key becomes current only after the old one is kept in `data_dir/keys/`, every
value is re-sealed one merchant per transaction (a value already under the new key is left
alone), and the old keys are deleted only once no stored value is under them. With the key in
`POINTGUARD_SECRET_KEY`, the new one is given (it cannot be stored in the environment from
here), and the operator switches the environment (docs/operations.md, "Keys at rest").
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard.cli.common import operator_errors, with_engine
from pointguard.config import Settings, load_settings

if TYPE_CHECKING:
    from pointguard.plugin.secretbox import Keyring

app = typer.Typer(help="The keys that seal merchants' credentials at rest.", no_args_is_help=True)


@app.command("rotate")
def keys_rotate(
    new_key_file: Annotated[
        Path | None,
        typer.Option(help="A file with the new key: base64 of 32 random bytes, mode 0600."),
    ] = None,
    new_key_stdin: Annotated[
        bool, typer.Option("--new-key-stdin", help="Read the new key (base64) from stdin.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(help="No new key: finish a rotation that stopped, under the current key."),
    ] = False,
) -> None:
    """Re-seal every stored credential under a new key (made here unless given), then delete
    the old keys that no value needs any more. Exits 1 while some value is left under an old
    key (one that does not open is counted, never changed)."""
    from pointguard.plugin.secretbox import Keyring, key_id, load_keyring, switch_current_key

    settings = load_settings()
    with operator_errors():
        new = _new_key(settings, new_key_file, new_key_stdin, resume)
        if new is not None and settings.secret_key is None:
            switch_current_key(settings, new)
        ring = load_keyring(settings)
        if new is not None and settings.secret_key is not None:
            ring = Keyring(new, tuple(ring))  # no reloading: it would make the old key current
    typer.echo(f"current key: {ring.current_id}")
    left = with_engine(lambda engine: _reseal(engine, ring))
    if left:
        typer.echo(
            f"{left} stored values are still under older keys: the old keys are kept; run"
            " `pointguard keys rotate --resume` again",
            err=True,
        )
        raise typer.Exit(code=1)
    _forget_old_keys(settings, ring.current_id)
    if settings.secret_key is not None and key_id(_env_key(settings)) != ring.current_id:
        typer.echo(
            "now set POINTGUARD_SECRET_KEY to the new key and drop POINTGUARD_SECRET_KEYS"
            " (restart PointGuard's processes)"
        )


async def _reseal(engine: AsyncEngine, ring: Keyring) -> int:
    """Seal everything under the ring's current key; print what was done; return how many
    values are left under other keys."""
    from pointguard import db
    from pointguard.plugin.merchants import reseal_all, values_not_under

    done = await reseal_all(engine, ring, moving_to=ring.current_id)
    typer.echo(
        f"re-sealed {done.values} values and bound {done.urls} URLs of {done.merchants}"
        f" merchants; {done.unreadable} did not open"
    )
    async with db.connection(engine) as pg:
        return await values_not_under(pg, ring.current_id)


def _new_key(
    settings: Settings, new_key_file: Path | None, new_key_stdin: bool, resume: bool
) -> bytes | None:
    """The key to move to: given, made here, or None (`--resume`: the current one)."""
    from pointguard.errors import SecretKeyInvalid
    from pointguard.plugin.secretbox import decode_key, new_key, read_key_file

    if sum((new_key_file is not None, new_key_stdin, resume)) > 1:
        raise SecretKeyInvalid("give one of --new-key-file, --new-key-stdin and --resume")
    if new_key_file is not None:
        return read_key_file(new_key_file)
    if new_key_stdin:
        return decode_key(sys.stdin.read(), "the new key on stdin")
    if resume:
        return None
    if settings.secret_key is not None:
        raise SecretKeyInvalid(
            "POINTGUARD_SECRET_KEY is set: give the new key with --new-key-file or"
            " --new-key-stdin (it cannot be stored in the environment from here)"
        )
    return new_key()


def _env_key(settings: Settings) -> bytes:
    from pointguard.plugin.secretbox import decode_key

    assert settings.secret_key is not None
    return decode_key(settings.secret_key, "POINTGUARD_SECRET_KEY")


def _forget_old_keys(settings: Settings, current_id: str) -> None:
    from pointguard.plugin.secretbox import forget_old_keys

    gone = forget_old_keys(settings, current_id)
    typer.echo(
        f"every stored value is sealed under key {current_id}; old key files deleted: "
        + (", ".join(str(path) for path in gone) or "none")
    )
