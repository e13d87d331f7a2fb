"""`pointguard outbox`: deliveries to merchants' endpoints that failed every attempt, and
queueing them again."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import JsonOutput, MerchantId, with_engine
from pointguard.cli.replay import EveryOne, replay

app = typer.Typer(
    help="Webhooks to merchants' endpoints and their dead deliveries.", no_args_is_help=True
)


@app.command("dead")
def outbox_dead(
    merchant: Annotated[str | None, typer.Option(help="One merchant only.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
    as_json: JsonOutput = False,
) -> None:
    """List deliveries to merchants' endpoints that failed every attempt, with their errors."""
    import dataclasses

    from pointguard.plugin.deliveries import MAX_LISTED, DeadDelivery, dead_deliveries

    if not 0 < limit <= MAX_LISTED:
        raise typer.BadParameter(f"must be 1..{MAX_LISTED}", param_hint="--limit")

    async def find(engine: AsyncEngine) -> list[DeadDelivery]:
        async with db.connection(engine) as pg:
            return await dead_deliveries(pg, merchant, limit=limit)

    dead = with_engine(find, merchant=merchant)
    if as_json:
        typer.echo(
            json.dumps(
                [{**dataclasses.asdict(d), "created_at": d.created_at.isoformat()} for d in dead]
            )
        )
        return
    if not dead:
        typer.echo(f"no dead deliveries{f' for merchant {merchant}' if merchant else ''}")
    for d in dead:
        answer = f"HTTP {d.last_status}" if d.last_status is not None else "no answer"
        typer.echo(
            f"{d.webhook_id} {d.event_type} of {d.created_at.isoformat()}"
            f" after {d.attempts} attempts ({answer}): {d.last_error}"
        )


@app.command("replay")
def outbox_replay(
    merchant: MerchantId,
    delivery: Annotated[
        str | None,
        typer.Argument(help="The webhook id (MERCHANT:OUTBOX_ID) or the outbox id.", metavar="ID"),
    ] = None,
    every: EveryOne = False,
) -> None:
    """Queue dead deliveries again, due now with their attempts reset and the same webhook id
    (after fixing the endpoint)."""
    from pointguard.plugin.deliveries import replay_dead_deliveries, replay_dead_delivery

    replay(
        merchant,
        delivery,
        every,
        one=replay_dead_delivery,
        all_of=replay_dead_deliveries,
        nouns=("dead delivery", "dead deliveries"),
    )
