"""The `pointguard` command: serve, migrate, demo, and ledger upkeep and verification."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
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
program_app = typer.Typer(help="Loyalty program documents.", no_args_is_help=True)
app.add_typer(program_app, name="program")

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


@program_app.command("load")
def program_load(
    file: Annotated[Path, typer.Argument(help="A program document in TOML.", exists=True)],
    merchant: Annotated[str, typer.Option(help="The merchant whose program this is.")],
    effective_from: Annotated[
        datetime | None, typer.Option(help="When it takes effect (default: now).")
    ] = None,
) -> None:
    """Validate a program document and save it as the merchant's next version."""
    from pointguard.errors import ProgramInvalid
    from pointguard.program.store import save_program
    from pointguard.program.validation import parse_program

    try:
        program = parse_program(file.read_text())
    except ProgramInvalid as error:
        typer.echo(f"{file}: the program is not valid; nothing was saved", err=True)
        for field, message in error.problems:
            typer.echo(f"  {field}: {message}", err=True)
        raise typer.Exit(code=1) from error
    when = _aware(effective_from) if effective_from else datetime.now(UTC)

    async def save(engine: AsyncEngine) -> int:
        return await db.run_in_transaction(
            engine, save_program, merchant, program, effective_from=when
        )

    version = _with_engine(save)
    typer.echo(
        f"merchant {merchant}: program {program.name!r} saved as version {version},"
        f" in force from {when.isoformat()}"
    )


@program_app.command("show")
def program_show(
    merchant: Annotated[str, typer.Option(help="The merchant.")],
    at: Annotated[
        datetime | None, typer.Option(help="The time to show it at (default: now).")
    ] = None,
) -> None:
    """Print the program in force (as JSON) and the list of versions."""
    import msgspec

    from pointguard.errors import ProgramNotFound
    from pointguard.program.store import program_history, program_in_force

    when = _aware(at) if at else datetime.now(UTC)

    async def show(engine: AsyncEngine) -> None:
        async with db.connection(engine) as pg:
            for version, effective_from in await program_history(pg, merchant):
                typer.echo(f"version {version}: in force from {effective_from.isoformat()}")
            current = await program_in_force(pg, merchant, when)
        typer.echo(f"in force at {when.isoformat()}: version {current.version}")
        typer.echo(msgspec.json.format(msgspec.json.encode(current.program)).decode())

    try:
        _with_engine(show)
    except ProgramNotFound as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error


@program_app.command("analytics")
def program_analytics_command(
    merchant: Annotated[str, typer.Option(help="The merchant.")],
    start: Annotated[datetime, typer.Option("--from", help="Period start (UTC if no zone).")],
    end: Annotated[datetime, typer.Option("--to", help="Period end, excluded.")],
) -> None:
    """Print the program's analytics for a period as JSON (definitions: docs/program.md)."""
    import dataclasses

    import msgspec

    from pointguard.program.analytics import program_analytics

    async def report(engine: AsyncEngine) -> dict[str, object]:
        async with db.connection(engine) as pg:
            figures = await program_analytics(pg, merchant, start=_aware(start), end=_aware(end))
        fields = dataclasses.asdict(figures)
        fields["members_by_tier"] = {
            str(tier): count for tier, count in figures.members_by_tier.items()
        }
        return fields

    typer.echo(msgspec.json.format(msgspec.json.encode(_with_engine(report))).decode())


def _aware(moment: datetime) -> datetime:
    """Command-line times without a zone are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
