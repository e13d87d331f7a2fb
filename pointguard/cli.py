"""The `pointguard` command: serve, migrate, demo, and ledger upkeep and verification."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import Settings, load_settings
from pointguard.db import PgConnection

if TYPE_CHECKING:
    from pointguard.plugin.merchants import NewMerchant

app = typer.Typer(
    help="PointGuard: a loyalty engine on a double-entry points ledger.", no_args_is_help=True
)
ledger_app = typer.Typer(help="Ledger upkeep and verification.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
program_app = typer.Typer(help="Loyalty program documents.", no_args_is_help=True)
app.add_typer(program_app, name="program")
inbox_app = typer.Typer(help="The webhook inbox and its dead letters.", no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")
outbox_app = typer.Typer(
    help="Webhooks to merchants' endpoints and their dead deliveries.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")
merchant_app = typer.Typer(help="Merchants and their webhook credentials.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")

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

    _with_engine(work_forever)


@app.command()
def dispatch(
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
) -> None:
    """Deliver outbox events to merchants' endpoints, signed (also runs inside `serve`)."""
    _observed(share_metrics=not once)  # a one-off pass would leave its files behind
    from pointguard.plugin.credentials import CredentialCache
    from pointguard.plugin.dispatcher import deliver_due, dispatch_forever
    from pointguard.plugin.secretbox import load_key

    credentials = CredentialCache(load_key(load_settings()))

    async def run(engine: AsyncEngine) -> None:
        if not once:
            await dispatch_forever(engine, credentials)
            return
        typer.echo(str(await deliver_due(engine, credentials)))

    _with_engine(run)


@inbox_app.command("dead")
def inbox_dead(
    merchant: Annotated[str | None, typer.Option(help="One merchant only.")] = None,
) -> None:
    """List dead-lettered webhooks with their errors."""
    from pointguard.plugin.worker import dead_letters

    async def show(engine: AsyncEngine) -> None:
        async with db.connection(engine) as pg:
            for row in await dead_letters(pg, merchant):
                typer.echo(
                    f"{row['merchant_id']} {row['webhook_id']} {row['event_type']}"
                    f" after {row['attempts']} attempts: {row['last_error']}"
                )

    _with_engine(show)


@inbox_app.command("replay")
def inbox_replay(merchant: str, webhook_id: str) -> None:
    """Queue a dead-lettered webhook again (after fixing what made it fail)."""
    from pointguard.plugin.worker import replay_dead_letter

    async def replay(engine: AsyncEngine) -> bool:
        return await db.run_in_transaction(engine, replay_dead_letter, merchant, webhook_id)

    if not _with_engine(replay):
        typer.echo(f"no dead letter {webhook_id!r} for merchant {merchant!r}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{merchant} {webhook_id}: queued again")


@outbox_app.command("dead")
def outbox_dead(
    merchant: Annotated[str | None, typer.Option(help="One merchant only.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON array, for scripts.")
    ] = False,
) -> None:
    """List deliveries to merchants' endpoints that failed every attempt, with their errors."""
    import dataclasses

    from pointguard.plugin.deliveries import MAX_LISTED, DeadDelivery, dead_deliveries

    if not 0 < limit <= MAX_LISTED:
        raise typer.BadParameter(f"must be 1..{MAX_LISTED}", param_hint="--limit")

    async def find(engine: AsyncEngine) -> list[DeadDelivery]:
        async with db.connection(engine) as pg:
            return await dead_deliveries(pg, merchant, limit=limit)

    dead = _with_engine(find)
    if as_json:
        typer.echo(
            json.dumps(
                [{**dataclasses.asdict(d), "created_at": d.created_at.isoformat()} for d in dead]
            )
        )
        return
    for d in dead:
        answer = f"HTTP {d.last_status}" if d.last_status is not None else "no answer"
        typer.echo(
            f"{d.webhook_id} {d.event_type} of {d.created_at.isoformat()}"
            f" after {d.attempts} attempts ({answer}): {d.last_error}"
        )


@outbox_app.command("replay")
def outbox_replay(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    delivery: Annotated[
        str | None,
        typer.Argument(help="The webhook id (MERCHANT:OUTBOX_ID) or the outbox id.", metavar="ID"),
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Every dead delivery of the merchant.")
    ] = False,
) -> None:
    """Queue dead deliveries again, due now with their attempts reset and the same webhook id
    (after fixing the endpoint)."""
    from pointguard.plugin.deliveries import replay_dead_deliveries, replay_dead_delivery

    if replay_all == (delivery is not None):
        raise typer.BadParameter("give either a webhook id or --all", param_hint="ID")

    async def replay(engine: AsyncEngine) -> int:
        if delivery is None:
            return await db.run_in_transaction(engine, replay_dead_deliveries, merchant)
        found = await db.run_in_transaction(engine, replay_dead_delivery, merchant, delivery)
        return int(found)

    queued = _with_engine(replay)
    if delivery is None:
        typer.echo(f"{merchant}: {queued} dead deliveries queued again")
    elif queued:
        typer.echo(f"{merchant} {delivery}: queued again")
    else:
        typer.echo(f"no dead delivery {delivery!r} for merchant {merchant!r}", err=True)
        raise typer.Exit(code=1)


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


@app.command()
def upkeep() -> None:
    """One upkeep pass over every merchant: timeouts, releases, expiry, sealing, tier reviews,
    expiry reminders, and the inbox's and outbox's retention; prints what each job did."""
    from pointguard.upkeep import upkeep_pass

    async def one_pass(engine: AsyncEngine) -> None:
        for job, result in (await upkeep_pass(engine)).items():
            typer.echo(f"{job}: {result}")

    _with_engine(one_pass)


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


@merchant_app.command("create")
def merchant_create(
    name: Annotated[str, typer.Argument(help="The merchant's display name.")],
    endpoint: Annotated[
        str | None, typer.Option(help="URL our signed webhooks are delivered to.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object, for scripts.")
    ] = False,
) -> None:
    """Register a merchant and print its secrets and API key. They are shown only this once."""
    import dataclasses

    from pointguard.plugin.merchants import create_merchant

    key = _credential_key()

    async def create(engine: AsyncEngine) -> NewMerchant:
        return await db.run_in_transaction(
            engine, create_merchant, key, name, endpoint_url=endpoint
        )

    made = _merchant_command(lambda: _with_engine(create))
    fields = dataclasses.asdict(made)
    if as_json:
        typer.echo(json.dumps(fields))
        return
    typer.echo(f"merchant {made.merchant_id} ({made.name}) created")
    labels = {
        "webhook_secret": "webhook secret (signs your webhooks to us)",
        "api_key": "API key",
        "outbound_public_key": "our Ed25519 public key (verifies v1a deliveries to you)",
        "outbound_webhook_secret": "our webhook secret (verifies v1 deliveries to you)",
        "endpoint_url": "delivery endpoint",
    }
    for field, label in labels.items():
        typer.echo(f"  {label}: {fields[field] or '(none)'}")
    typer.echo("Store the secrets and the API key now: they are not shown again.")


@merchant_app.command("set-endpoint")
def merchant_set_endpoint(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    url: Annotated[str, typer.Argument(help="URL our signed webhooks are delivered to.")],
) -> None:
    """Deliver the merchant's outbound webhooks to URL."""
    from pointguard.plugin.merchants import set_endpoint

    _save_merchant_url(set_endpoint, merchant, url)
    typer.echo(f"merchant {merchant}: webhooks are delivered to {url}")


@merchant_app.command("rotate-secret")
def merchant_rotate_secret(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
) -> None:
    """Add a new inbound webhook secret and print it; the previous one stays valid until the
    next rotation, so the storefront can switch without dropped webhooks."""
    from pointguard.plugin.merchants import rotate_inbound_secret

    key = _credential_key()

    async def rotate(engine: AsyncEngine) -> str:
        return await db.run_in_transaction(engine, rotate_inbound_secret, key, merchant)

    typer.echo(_merchant_command(lambda: _with_engine(rotate)))


@merchant_app.command("set-jwks")
def merchant_set_jwks(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    url: Annotated[
        str, typer.Argument(help="The storefront's JWKS, e.g. https://shop/.well-known/jwks.json")
    ],
) -> None:
    """Verify the merchant's Saleor-style webhooks with the RS256 keys published at URL."""
    from pointguard.plugin.merchants import set_jwks_url

    _save_merchant_url(set_jwks_url, merchant, url)
    typer.echo(f"merchant {merchant}: Saleor-style webhooks are verified with the keys at {url}")


@merchant_app.command("set-adapter-secret")
def merchant_set_adapter_secret(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    sender: Annotated[str, typer.Argument(help="shopify or woocommerce.")],
    secret: Annotated[
        str, typer.Argument(help="The secret chosen there; - reads it from stdin instead.")
    ],
) -> None:
    """Verify the merchant's Shopify- or WooCommerce-style webhooks with the secret the shop
    owner chose there (Shopify's app secret, WooCommerce's webhook secret), in place of the
    inbound secret. Pass - and pipe the secret in, to keep it out of the shell's history."""
    import sys

    from pointguard.plugin.merchants import set_adapter_secret

    if secret == "-":
        secret = sys.stdin.read().strip()
    key = _credential_key()

    async def save(engine: AsyncEngine) -> None:
        await db.run_in_transaction(engine, set_adapter_secret, key, merchant, sender, secret)

    _merchant_command(lambda: _with_engine(save))
    typer.echo(f"merchant {merchant}: {sender} webhooks are verified with the secret given")


@merchant_app.command("set-sender-key")
def merchant_set_sender_key(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    public_key: Annotated[
        str, typer.Argument(help="The sender's Ed25519 public key: base64, optionally whpk_...")
    ],
) -> None:
    """Accept `v1a` (Ed25519) signatures from a storefront that signs with its own private key,
    verified with this public key, in place of any earlier one (HMAC `v1` keeps working)."""
    import base64
    import binascii

    from pointguard.plugin.merchants import set_inbound_public_key

    try:
        raw = base64.b64decode(public_key.removeprefix("whpk_"), validate=True)
    except binascii.Error as error:
        typer.echo(f"not base64: {error}", err=True)
        raise typer.Exit(code=1) from error

    async def save(engine: AsyncEngine) -> None:
        await db.run_in_transaction(engine, set_inbound_public_key, merchant, raw)

    _merchant_command(lambda: _with_engine(save))
    typer.echo(f"merchant {merchant}: v1a signatures are verified with the key given")


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


def _credential_key() -> bytes:
    """The key for credentials at rest, or a clear message and exit 1."""
    from pointguard.plugin.secretbox import load_key

    return _merchant_command(lambda: load_key(load_settings()))


def _save_merchant_url(
    setter: Callable[[PgConnection, str, str | None], Awaitable[None]], merchant: str, url: str
) -> None:
    """Store one of the merchant's URLs with `setter`, in a transaction of its own."""

    async def save(engine: AsyncEngine) -> None:
        await db.run_in_transaction(engine, setter, merchant, url)

    _merchant_command(lambda: _with_engine(save))


def _merchant_command(work: Callable[[], T]) -> T:
    """Run `work`; a merchant error the operator can fix becomes a message and exit 1."""
    from pointguard.errors import (
        MerchantExists,
        MerchantInvalid,
        SecretKeyInvalid,
        UnknownMerchant,
    )

    try:
        return work()
    except (MerchantExists, MerchantInvalid, SecretKeyInvalid, UnknownMerchant) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error


def _aware(moment: datetime) -> datetime:
    """Command-line times without a zone are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
