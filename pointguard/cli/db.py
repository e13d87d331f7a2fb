"""`pointguard db`: the embedded PostgreSQL that every command starts when DATABASE_URL is unset,
and that keeps running after they exit. `status` and `stop` never start it; `url` does, since
the URL is for connecting (`psql "$(pointguard db url)"`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pointguard import db
from pointguard.cli.common import JsonOutput, operator_errors
from pointguard.config import load_settings

app = typer.Typer(
    help="The embedded PostgreSQL: its state, its URL, stopping it.", no_args_is_help=True
)

BYTES_PER_MB = 1024 * 1024


@app.command("status")
def db_status(
    as_json: JsonOutput = False,
) -> None:
    """Whether the embedded PostgreSQL runs, its data folder and size, its version, and the
    URL to connect to it with psql."""
    settings = load_settings()
    server = db.embedded_server(settings.embedded_pg_dir)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": server.running,
                    "pid": server.pid,
                    "data_folder": str(server.pg_dir),
                    "created": server.created,
                    "size_bytes": server.size_bytes,
                    "version": server.version,
                    "url": server.url,
                    "used_by_pids": list(server.users),
                    "database_url_set": settings.database_url is not None,
                }
            )
        )
        return
    if server.running:
        state = f"running (pid {server.pid}); `pointguard db stop` stops it"
    elif server.created:
        state = "stopped; any pointguard command starts it again"
    else:
        state = "not created yet; any pointguard command creates and starts it"
    typer.echo(f"embedded PostgreSQL: {state}")
    typer.echo(f"data folder: {server.pg_dir} ({server.size_bytes / BYTES_PER_MB:.1f} MB)")
    typer.echo(f"version: {server.version}")
    if server.url:
        typer.echo(f"url: {server.url}")
    if server.users:
        typer.echo(f"used by processes: {', '.join(str(pid) for pid in server.users)}")
    if settings.database_url:
        typer.echo("DATABASE_URL is set: commands use that server, not this one")


@app.command("stop")
def db_stop(
    force: Annotated[
        bool, typer.Option(help="Stop it even while PointGuard processes are using it.")
    ] = False,
) -> None:
    """Stop the embedded PostgreSQL (committed work is safe). It stays stopped until the next
    pointguard command starts it."""
    with operator_errors():
        stopped = db.stop_embedded_postgres(load_settings().embedded_pg_dir, force=force)
    if stopped is None:
        typer.echo("embedded PostgreSQL: not running")
    else:
        typer.echo(f"embedded PostgreSQL: stopped (was pid {stopped.pid}, {stopped.pg_dir})")


@app.command("url")
def db_url() -> None:
    """Print the database URL in libpq form, for psql and other PostgreSQL tools: DATABASE_URL
    when set, else the embedded server's (started if it is not running)."""
    typer.echo(db.libpq_url(db.resolve_database_url(load_settings())))
