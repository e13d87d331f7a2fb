"""`pointguard ledger`: verification of the ledger; `verify` exits 1 on any break. (Its upkeep
runs with everything else's: `pointguard upkeep`.)"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import with_engine

app = typer.Typer(help="Ledger verification.", no_args_is_help=True)


@app.command("verify")
def ledger_verify(
    merchant: Annotated[str | None, typer.Option(help="Verify one merchant only.")] = None,
) -> None:
    """Check the hash chain, zero-sum entries, balances against postings, and lots.
    Exits 1 on any break, or for a merchant that does not exist."""
    from pointguard.ledger.reading import ledger_merchants
    from pointguard.ledger.verify import verify_merchant

    async def verify(engine: AsyncEngine) -> bool:
        async with db.connection(engine) as pg:
            merchants = [merchant] if merchant else await ledger_merchants(pg)
            ok = True
            for merchant_id in merchants:
                report = await verify_merchant(pg, merchant_id)
                state = "ok" if report.ok else f"BROKEN ({len(report.problems)} problems)"
                typer.echo(
                    f"merchant {merchant_id}: {report.entries_sealed} sealed entries, {state}"
                )
                for problem in report.problems:
                    typer.echo(f"  - {problem}")
                ok = ok and report.ok
            return ok

    if not with_engine(verify, merchant=merchant):
        raise typer.Exit(code=1)
