"""The `pointguard` command: serve, migrate, demo, and ledger upkeep and verification."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import load_settings

app = typer.Typer(
    help="PointGuard: a loyalty engine on a double-entry points ledger.", no_args_is_help=True
)
ledger_app = typer.Typer(help="Ledger upkeep and verification.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

T = TypeVar("T")


def _with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Connect (starting the embedded PostgreSQL when DATABASE_URL is unset), migrate, work."""
    settings = load_settings()

    async def run() -> T:
        engine = db.create_engine(db.resolve_database_url(settings), pool_size=4)
        try:
            await db.migrate(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the HTTP server (health endpoints; webhooks and GraphQL as they land)."""
    import uvicorn

    from pointguard.app import create_app

    settings = load_settings()
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""

    async def done(engine: AsyncEngine) -> None:
        typer.echo("database is at the newest migration")

    _with_engine(done)


@app.command()
def demo() -> None:
    """Walk one member through earning, release, a checkout and expiry, and print the ledger."""
    from pointguard.demo import run_demo

    _with_engine(lambda engine: run_demo(engine, typer.echo))


@ledger_app.command("verify")
def ledger_verify(
    merchant: Annotated[str | None, typer.Option(help="Verify one merchant only.")] = None,
) -> None:
    """Check the hash chain, zero-sum entries, balances against postings, and lots.
    Exits 1 on any break."""
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

    if not _with_engine(verify):
        raise typer.Exit(code=1)


@ledger_app.command("maintain")
def ledger_maintain() -> None:
    """One upkeep pass: void timed-out reservations, release due earns, expire lots, seal."""
    from pointguard.ledger.maintenance import maintain_all

    async def maintain(engine: AsyncEngine) -> None:
        for merchant_id, counts in (await maintain_all(engine)).items():
            typer.echo(f"merchant {merchant_id}: {counts}")

    _with_engine(maintain)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
