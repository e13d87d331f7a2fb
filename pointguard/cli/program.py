"""`pointguard program`: loading, showing and reporting on loyalty program documents. A time
given without a zone is UTC; an invalid document is reported field by field and not saved."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import in_transaction, with_engine

app = typer.Typer(help="Loyalty program documents.", no_args_is_help=True)


@app.command("load")
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
    version = in_transaction(save_program, merchant, program, effective_from=when)
    typer.echo(
        f"merchant {merchant}: program {program.name!r} saved as version {version},"
        f" in force from {when.isoformat()}"
    )


@app.command("show")
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
        with_engine(show)
    except ProgramNotFound as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error


@app.command("analytics")
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

    typer.echo(msgspec.json.format(msgspec.json.encode(with_engine(report))).decode())


def _aware(moment: datetime) -> datetime:
    """Command-line times without a zone are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
