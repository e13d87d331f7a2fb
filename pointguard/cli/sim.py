"""`pointguard sim`: a simulated storefront for trying the fraud guard. `generate` writes a
seeded stream of webhook bodies with labelled attacks (docs/fraud.md#simulator); `send` posts a
stream to a server as signed Standard Webhooks. Neither touches the database: `send` talks to
the server over HTTP like any storefront."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from pointguard.cli.common import utc

app = typer.Typer(
    help="A simulated storefront: a seeded event stream with labelled attacks, and sending it.",
    no_args_is_help=True,
)

MAX_FAILURES_SHOWN = 5


@app.command("generate")
def sim_generate(
    customers: Annotated[int, typer.Option(min=1, help="Honest customers.")] = 1000,
    days: Annotated[int, typer.Option(min=1, help="Days simulated.")] = 90,
    seed: Annotated[
        int, typer.Option(help="The same seed gives the same stream, byte for byte.")
    ] = 1,
    start: Annotated[
        str | None,
        typer.Option(
            help="When the period starts, ISO 8601 (UTC if no zone)."
            "  [default: 2026-01-05T00:00:00Z]"
        ),
    ] = None,
) -> None:
    """Write a storefront's event stream to stdout, one JSON object per line in time order:
    the webhook body (type, timestamp, data) with its webhook_id and label ({abusive, kind}),
    and checkout.redeemed lines for checkouts spending points. A summary goes to stderr."""
    from pointguard.fraud.simulation.events import HONEST
    from pointguard.fraud.simulation.period import DEFAULT_START
    from pointguard.fraud.simulation.stream import StreamSettings, stream_lines

    try:
        first = DEFAULT_START if start is None else utc(datetime.fromisoformat(start))
        settings = StreamSettings(customers=customers, days=days, seed=seed, start=first)
    except ValueError as error:
        typer.echo(f"sim generate: {error}", err=True)
        raise typer.Exit(code=1) from error
    kinds: Counter[str] = Counter()
    for line in stream_lines(settings):
        kinds[line.kind] += 1
        sys.stdout.write(line.text + "\n")
    sys.stdout.flush()
    total = sum(kinds.values())
    abusive = total - kinds[HONEST]
    attacks = ", ".join(
        f"{kind} {count}" for kind, count in sorted(kinds.items()) if kind != HONEST
    )
    typer.echo(
        f"{total} events for {customers} customers over {days} days from"
        f" {settings.start.isoformat()}: {abusive} abusive ({abusive / total:.1%}): {attacks}",
        err=True,
    )


@app.command("send")
def sim_send(
    stream: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="A stream from `sim generate`."
        ),
    ],
    url: Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8000.")],
    merchant: Annotated[str, typer.Option(help="The merchant id the webhooks go to.")],
    secret: Annotated[
        str,
        typer.Option(
            envvar="POINTGUARD_WEBHOOK_SECRET",
            help="The merchant's inbound webhook_secret (whsec_...), from `merchant create`.",
        ),
    ],
    concurrency: Annotated[
        int, typer.Option(min=1, help="Requests in flight at most (up to 64).")
    ] = 8,
) -> None:
    """Post every line of a stream as a signed Standard Webhook to URL/webhooks/MERCHANT,
    signed now (each body keeps its event's own timestamp), showing progress on stderr.
    checkout.redeemed lines are skipped: checkouts need the GraphQL API. Exits 1 if any
    webhook was refused, naming the first few."""
    import time

    from pointguard.fraud.simulation.sender import (
        MAX_CONCURRENCY,
        StreamInvalid,
        read_stream,
        send_stream,
    )
    from pointguard.plugin.signatures import sign_standard_webhook

    try:
        if concurrency > MAX_CONCURRENCY:
            raise ValueError(f"--concurrency is at most {MAX_CONCURRENCY}")
        # A secret that is not whsec_ and base64 fails here, before anything is read or sent.
        sign_standard_webhook(secret=secret, private_key=None, webhook_id="", timestamp=0, body=b"")
        with stream.open(encoding="utf-8") as lines:
            deliveries, checkouts = read_stream(lines)
    except (StreamInvalid, ValueError) as error:
        typer.echo(f"sim send: {error}", err=True)
        raise typer.Exit(code=1) from error

    shown = -1

    def progress(done: int, total: int) -> None:
        nonlocal shown
        percent = 100 * done // total
        if percent != shown or done == total:
            shown = percent
            typer.echo(f"\rsent {done}/{total} ({percent}%)", err=True, nl=done == total)

    began = time.monotonic()
    report = asyncio.run(
        send_stream(
            deliveries,
            url=url,
            merchant=merchant,
            secret=secret,
            concurrency=concurrency,
            progress=progress,
        )
    )
    took_s = time.monotonic() - began
    typer.echo(
        f"{report.total} webhooks sent to {url} for {merchant} in {took_s:.1f} s"
        f" ({report.total / max(took_s, 1e-9):.0f}/s): {report.accepted} accepted,"
        f" {len(report.failures)} refused"
    )
    if checkouts:
        typer.echo(
            f"{checkouts} checkout.redeemed lines skipped: checkouts go through the GraphQL"
            " API, which is not there yet"
        )
    if report.failures:
        typer.echo("first refused:", err=True)
        for failure in report.failures[:MAX_FAILURES_SHOWN]:
            typer.echo(f"  {failure}", err=True)
        raise typer.Exit(code=1)
