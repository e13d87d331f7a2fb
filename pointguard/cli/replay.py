"""What `inbox replay` and `outbox replay` share: `replay M ID` queues one dead item of the
merchant again, `replay M --all` every one; an unknown merchant, or an id that is not a dead
item of the merchant, is an error (exit 1), so a script can tell a typo from a replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from pointguard import db
from pointguard.cli.common import with_engine
from pointguard.db import PgConnection

EveryOne = Annotated[bool, typer.Option("--all", help="Every dead one of the merchant.")]


def replay(
    merchant: str,
    item: str | None,
    every: bool,
    *,
    one: Callable[[PgConnection, str, str], Awaitable[bool]],
    all_of: Callable[[PgConnection, str], Awaitable[int]],
    nouns: tuple[str, str],
) -> None:
    """Queue `item` (with `one`) or, with `every`, all dead items of `merchant` (with `all_of`)
    again, and say so; `nouns` names one dead item and several ("dead letter", "dead letters")."""
    if every == (item is not None):
        raise typer.BadParameter("give either an id or --all", param_hint="ID")
    if item is None:
        queued = with_engine(
            lambda engine: db.run_in_transaction(engine, all_of, merchant), merchant=merchant
        )
        typer.echo(f"{merchant}: {queued} {nouns[queued != 1]} queued again")
    elif with_engine(
        lambda engine: db.run_in_transaction(engine, one, merchant, item), merchant=merchant
    ):
        typer.echo(f"{merchant} {item}: queued again")
    else:
        typer.echo(f"no {nouns[0]} {item!r} for merchant {merchant!r}", err=True)
        raise typer.Exit(code=1)
