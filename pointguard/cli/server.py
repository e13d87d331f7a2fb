"""The top-level commands: the long-running processes (serve, worker, dispatch), which pool
their metrics, and the one-off ones (migrate, demo, upkeep).

A long-running command calls `_observed` before it imports anything that imports
prometheus_client, which reads where to pool on import (metrics_dir.py).
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard.cli.common import with_engine
from pointguard.config import Settings, load_settings

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes, each with its own inbox worker.")
    ] = 1,
) -> None:
    """Run the HTTP server (webhooks, health endpoints, /metrics) with its inbox workers,
    outbox dispatcher and upkeep."""
    settings = _observed(share_metrics=True, clean_metrics=True)
    import uvicorn

    from pointguard import serving
    from pointguard.logs import logging_config

    serving.run(
        uvicorn.Config(
            "pointguard.app:create_app",  # each process makes its app from the environment
            factory=True,
            workers=workers,
            host=host or settings.host,
            port=port or settings.port,
            log_config=logging_config(settings),
            access_log=settings.log_level == "debug",  # a line per request: not on the hot path
        )
    )


@app.command()
def worker() -> None:
    """Apply webhooks from the inbox until stopped (any number may run at once)."""
    _observed(share_metrics=True)
    from pointguard.plugin.worker import work_forever

    with_engine(work_forever)


@app.command()
def dispatch(
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
) -> None:
    """Deliver outbox events to merchants' endpoints, signed (also runs inside `serve`)."""
    settings = _observed(share_metrics=not once)  # a one-off pass would leave its files behind
    from pointguard.plugin.credentials import CredentialCache
    from pointguard.plugin.dispatcher import deliver_due, dispatch_forever
    from pointguard.plugin.secretbox import load_key

    credentials = CredentialCache(load_key(settings))

    async def run(engine: AsyncEngine) -> None:
        if not once:
            await dispatch_forever(engine, credentials)
            return
        typer.echo(str(await deliver_due(engine, credentials)))

    with_engine(run)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""

    async def done(engine: AsyncEngine) -> None:
        typer.echo("database is at the newest migration")

    with_engine(done)


@app.command()
def upkeep() -> None:
    """One upkeep pass over every merchant: timeouts, releases, expiry, sealing, tier reviews,
    expiry reminders, and the inbox's and outbox's retention; prints what each job did."""
    from pointguard.upkeep import upkeep_pass

    async def one_pass(engine: AsyncEngine) -> None:
        settings = load_settings()
        for job, result in (await upkeep_pass(engine, settings.clock(), settings=settings)).items():
            typer.echo(f"{job}: {result}")

    with_engine(one_pass)


def _observed(*, share_metrics: bool, clean_metrics: bool = False) -> Settings:
    """The settings, with this process's log lines set up and, for a long-running command, its
    metrics pooled with those of PointGuard's other processes on this machine. Runs before
    anything imports prometheus_client, which reads where to pool on import (metrics_dir.py)."""
    from pointguard import logs
    from pointguard.metrics_dir import share_metrics as share

    settings = load_settings()
    if share_metrics:
        share(settings.shared_metrics_dir, clean=clean_metrics)
    logs.configure(settings)
    return settings
