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
from pointguard.config import DEFAULT_HOST, DEFAULT_PORT, Settings, load_settings

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to listen on.", show_default=f"$POINTGUARD_HOST or {DEFAULT_HOST}"
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on.", show_default=f"$POINTGUARD_PORT or {DEFAULT_PORT}"),
    ] = None,
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
            # Past this many connections or requests in progress, a 503 at once
            # (POINTGUARD_MAX_CONNECTIONS): a flood cannot take every socket and task.
            limit_concurrency=settings.max_connections,
        )
    )


@app.command()
def worker() -> None:
    """Apply webhooks from the inbox until stopped (any number may run at once)."""
    settings = _observed(share_metrics=True)
    from pointguard.plugin.secretbox import load_keyring
    from pointguard.plugin.worker import work_forever

    keys = load_keyring(settings)  # opens the merchants' identity keys for the fraud guard

    async def run(engine: AsyncEngine) -> None:
        await work_forever(engine, keys, guarded=settings.fraud_guard)

    with_engine(run)


@app.command()
def dispatch(
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
) -> None:
    """Deliver outbox events to merchants' endpoints, signed (also runs inside `serve`)."""
    settings = _observed(share_metrics=not once)  # a one-off pass would leave its files behind
    from pointguard.plugin.credentials import CredentialCache
    from pointguard.plugin.dispatcher import deliver_due, dispatch_forever
    from pointguard.plugin.secretbox import load_keyring

    credentials = CredentialCache(load_keyring(settings))  # old keys too, mid-rotation

    async def run(engine: AsyncEngine) -> None:
        if not once:
            await dispatch_forever(engine, credentials)
            return
        for line in _count_lines(
            "dispatch", await deliver_due(engine, credentials), DISPATCH_WORDS
        ):
            typer.echo(line)

    with_engine(run)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""

    async def done(engine: AsyncEngine) -> None:
        typer.echo("database is at the newest migration")

    with_engine(done)


@app.command()
def upkeep(
    merchant: Annotated[str | None, typer.Option(help="One merchant's jobs only.")] = None,
) -> None:
    """One upkeep pass over every merchant: timeouts, releases, expiry, sealing, tier reviews,
    expiry reminders, and the inbox's and outbox's retention; prints what each job did, one
    `merchant what: count` line each."""
    from pointguard.upkeep import upkeep_pass

    async def one_pass(engine: AsyncEngine) -> dict[str, object]:
        settings = load_settings()
        return await upkeep_pass(engine, settings.clock(), settings=settings, merchant_id=merchant)

    done = with_engine(one_pass, merchant=merchant)
    for line in _upkeep_lines(done):
        typer.echo(line)
    if not done:
        typer.echo("upkeep: no merchants yet, nothing to do")


# Jobs that report several counts at once (a dataclass of counts) say them in these words.
LEDGER_JOB_WORDS = {
    "voided": "reservations voided",
    "released": "pending earns released",
    "expired_points": "points expired",
    "sealed": "entries sealed",
}
DISPATCH_WORDS = {
    "delivered": "deliveries made",
    "retried": "deliveries to retry",
    "dead": "deliveries dead",
    "circuit_open": "merchants paused by an open circuit",
}


def _upkeep_lines(done: dict[str, object]) -> list[str]:
    """`upkeep_pass`'s results as `merchant what: count` lines."""
    return [
        line for job, result in done.items() for line in _count_lines(job, result, LEDGER_JOB_WORDS)
    ]


def _count_lines(job: str, result: object, words: dict[str, str]) -> list[str]:
    """`job what: count` lines for a job's result: one per count of a dataclass of counts, in
    `words` (a count not there yet by its field name), or the job's one count."""
    import dataclasses

    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        return [f"{job}: {result}"]
    return [
        f"{job} {words.get(f.name, f.name.replace('_', ' '))}: {getattr(result, f.name)}"
        for f in dataclasses.fields(result)
    ]


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
