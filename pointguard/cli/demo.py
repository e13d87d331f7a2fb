"""`pointguard demo`: the example program told as one member's story, on a simulated calendar."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard.cli.common import utc, with_engine
from pointguard.config import load_settings

app = typer.Typer()


@app.command()
def demo(
    start: Annotated[
        datetime | None,
        typer.Option(
            help="The first day of the simulated calendar, in UTC."
            "  [default: 2026-11-20 10:00, a week before the example program's Black Friday]"
        ),
    ] = None,
) -> None:
    """A new demo merchant with the example program, and one member's first seven weeks in it:
    signup, three orders (one in a promotion), a return, the release of pending points and a
    checkout that redeems a reward; then the member's ledger, balance, tier and badges, and a
    `ledger verify` of the merchant. Same story on any day; run it as often as you like."""
    from pointguard.demo import DEMO_START, run_demo
    from pointguard.plugin.secretbox import load_key

    settings = load_settings()
    key = load_key(settings)
    first_day = DEMO_START if start is None else utc(start)

    async def tell(engine: AsyncEngine) -> None:
        await run_demo(engine, typer.echo, secret_key=key, start=first_day)

    with_engine(tell)
    if settings.database_url is None:
        typer.echo(
            f"\nThe embedded PostgreSQL ({settings.embedded_pg_dir}) keeps running for the next"
            " command: `pointguard db status` shows it, `pointguard db stop` stops it."
        )
