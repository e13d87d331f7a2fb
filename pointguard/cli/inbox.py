"""`pointguard inbox`: the webhooks that failed every attempt, and queueing them again."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import in_transaction, with_engine

app = typer.Typer(help="The webhook inbox and its dead letters.", no_args_is_help=True)


@app.command("dead")
def inbox_dead(
    merchant: Annotated[str | None, typer.Option(help="One merchant only.")] = None,
) -> None:
    """List dead-lettered webhooks with their errors."""
    from pointguard.plugin.worker import dead_letters

    async def show(engine: AsyncEngine) -> None:
        async with db.connection(engine) as pg:
            for row in await dead_letters(pg, merchant):
                typer.echo(
                    f"{row['merchant_id']} {row['webhook_id']} {row['event_type']}"
                    f" after {row['attempts']} attempts: {row['last_error']}"
                )

    with_engine(show)


@app.command("replay")
def inbox_replay(merchant: str, webhook_id: str) -> None:
    """Queue a dead-lettered webhook again (after fixing what made it fail)."""
    from pointguard.plugin.worker import replay_dead_letter

    if not in_transaction(replay_dead_letter, merchant, webhook_id):
        typer.echo(f"no dead letter {webhook_id!r} for merchant {merchant!r}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{merchant} {webhook_id}: queued again")
