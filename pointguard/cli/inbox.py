"""`pointguard inbox`: the webhooks that could not be applied, and queueing them again once what
made them fail is fixed (most often: no program was in force at the event's time)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import JsonOutput, MerchantId, with_engine
from pointguard.cli.replay import EveryOne, replay

app = typer.Typer(help="The webhook inbox and its dead letters.", no_args_is_help=True)

MAX_LISTED = 1000


@app.command("dead")
def inbox_dead(
    merchant: Annotated[str | None, typer.Option(help="One merchant only.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LISTED, help="At most this many, oldest first.")
    ] = 100,
    as_json: JsonOutput = False,
) -> None:
    """List dead-lettered webhooks with their errors, oldest first."""
    from pointguard.plugin.worker import dead_letters

    async def find(engine: AsyncEngine) -> list[dict[str, object]]:
        async with db.connection(engine) as pg:
            return await dead_letters(pg, merchant, limit)

    dead = with_engine(find, merchant=merchant)
    if as_json:
        typer.echo(json.dumps(dead, default=lambda moment: moment.isoformat()))
        return
    if not dead:
        typer.echo("no dead letters" + (f" for merchant {merchant}" if merchant else ""))
    for row in dead:
        typer.echo(
            f"{row['merchant_id']} {row['webhook_id']} {row['event_type']}"
            f" after {row['attempts']} attempts: {row['last_error']}"
        )


@app.command("replay")
def inbox_replay(
    merchant: MerchantId,
    webhook_id: Annotated[
        str | None, typer.Argument(help="The webhook id of a dead letter.", metavar="ID")
    ] = None,
    every: EveryOne = False,
) -> None:
    """Queue dead-lettered webhooks again (after fixing what made them fail): one by its
    webhook id, or --all of the merchant's."""
    from pointguard.plugin.worker import replay_dead_letter, replay_dead_letters

    replay(
        merchant,
        webhook_id,
        every,
        one=replay_dead_letter,
        all_of=replay_dead_letters,
        nouns=("dead letter", "dead letters"),
    )
