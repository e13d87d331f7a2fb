"""`pointguard program`: loading, showing and reporting on loyalty program documents. A time
given without a zone is UTC; an invalid document is reported field by field and not saved; an
unknown merchant is refused (`no merchant 'x'`, exit 1); `show` and `analytics` print JSON."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import given_or_now, utc, with_engine

app = typer.Typer(help="Loyalty program documents.", no_args_is_help=True)


@app.command("load")
def program_load(
    file: Annotated[Path, typer.Argument(help="A program document in TOML.", exists=True)],
    merchant: Annotated[str, typer.Option(help="The merchant id whose program this is.")],
    effective_from: Annotated[
        datetime | None,
        typer.Option(
            help="When it takes effect (default: now). Earlier than the version in force only"
            " while no version was in force then."
        ),
    ] = None,
) -> None:
    """Validate a program document and save it as the merchant's next version. Every problem
    is reported at once, and nothing is saved."""
    from pointguard.errors import ProgramInvalid
    from pointguard.program.document.validate import parse_program
    from pointguard.program.document.versions import save_program

    when = given_or_now(effective_from)
    try:
        program = parse_program(file.read_text())
        version = with_engine(
            lambda engine: db.run_in_transaction(
                engine, save_program, merchant, program, effective_from=when
            ),
            merchant=merchant,
        )
    except ProgramInvalid as error:
        typer.echo(f"{file}: nothing was saved; the version in force stays as it was", err=True)
        for field, message in error.problems:
            typer.echo(f"  {field}: {message}", err=True)
        raise typer.Exit(code=1) from error
    typer.echo(
        f"merchant {merchant}: program {program.name!r} saved as version {version},"
        f" in force from {when.isoformat()}"
    )


@app.command("show")
def program_show(
    merchant: Annotated[str, typer.Option(help="The merchant id.")],
    at: Annotated[
        datetime | None, typer.Option(help="The time to show it at (default: now).")
    ] = None,
) -> None:
    """Print, as one JSON object, the version in force, every version with the time it takes
    effect, and the program document in force."""
    import msgspec

    from pointguard.program.document.versions import program_history, program_in_force

    when = given_or_now(at)

    async def show(engine: AsyncEngine) -> dict[str, object]:
        async with db.connection(engine) as pg:
            history = await program_history(pg, merchant)
            current = await program_in_force(pg, merchant, when)
        return {
            "merchant_id": merchant,
            "at": when,
            "version": current.version,
            "versions": [{"version": v, "effective_from": since} for v, since in history],
            "program": current.program,
        }

    shown = with_engine(show, merchant=merchant)
    typer.echo(msgspec.json.format(msgspec.json.encode(shown)).decode())


@app.command("analytics")
def program_analytics_command(
    merchant: Annotated[str, typer.Option(help="The merchant id.")],
    start: Annotated[datetime, typer.Option("--from", help="Period start (UTC if no zone).")],
    end: Annotated[datetime, typer.Option("--to", help="Period end, excluded.")],
) -> None:
    """Print the program's analytics for a period as JSON (definitions: docs/program.md)."""
    import dataclasses

    import msgspec

    from pointguard.program.reports.analytics import program_analytics

    async def report(engine: AsyncEngine) -> dict[str, object]:
        async with db.connection(engine) as pg:
            figures = await program_analytics(pg, merchant, start=utc(start), end=utc(end))
        fields = dataclasses.asdict(figures)
        fields["members_by_tier"] = {
            str(tier): count for tier, count in figures.members_by_tier.items()
        }
        return fields

    figures = with_engine(report, merchant=merchant)
    typer.echo(msgspec.json.format(msgspec.json.encode(figures)).decode())
