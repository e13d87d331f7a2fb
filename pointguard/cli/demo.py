"""`pointguard demo`: the tour of the whole product on a simulated storefront (`tour.py`), or,
with `--story`, the example program told as one member's story (`demo.py`). Both on a
simulated calendar."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard.cli.common import utc, with_engine
from pointguard.config import load_settings

app = typer.Typer()


@app.command()
def demo(
    minutes: Annotated[
        int,
        typer.Option(
            min=1,
            max=60,
            help="How long the traffic streams at most (wall time); the stream's size grows"
            " with it.",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option(help="The simulator's seed: same seed, same story.")] = 1,
    serve: Annotated[
        bool,
        typer.Option(
            help="Serve the app and send the traffic as signed webhooks over HTTP, then keep"
            " serving until Ctrl-C. --no-serve applies it in this process and exits."
        ),
    ] = True,
    port: Annotated[
        int | None,
        typer.Option(help="The served app's port.", show_default="$POINTGUARD_PORT or 8000"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The summary as one JSON object on stdout.")
    ] = False,
    story: Annotated[
        bool, typer.Option("--story", help="One member's story instead of the tour.")
    ] = False,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="--story: the first day of the simulated calendar, in UTC."
            "  [default: 2026-11-20 10:00, a week before the example program's Black Friday]"
        ),
    ] = None,
) -> None:
    """The tour: a new demo merchant with the example program; simulated storefront traffic
    (honest customers and attacks) sent as signed webhooks to the server started here, with a
    progress bar; releases and expiry on the simulated calendar; then a summary (members,
    orders, points issued, pending, released, held and forfeited, liability, fraud cases,
    attacks caught and missed, `ledger verify`) and what to open next: GraphiQL, the review
    console with a reviewer key, and a customer token with a `curl` that uses it. Exits 1 if
    the ledger does not verify.

    --story: a new demo merchant and one member's first seven weeks in it (signup, three
    orders, a return, the release of pending points, a checkout redeeming a reward), then the
    member's ledger, balance, tier and badges. Same story on any day; run either as often as
    you like."""
    if story:
        _story(start)
        return
    if start is not None:
        raise typer.BadParameter("--start is for --story (the tour's calendar is fixed)")
    _tour(minutes=minutes, seed=seed, serve=serve, port=port, as_json=as_json)


def _story(start: datetime | None) -> None:
    from pointguard.demo import DEMO_START, run_demo
    from pointguard.plugin.secretbox import load_key

    settings = load_settings()
    key = load_key(settings)
    first_day = DEMO_START if start is None else utc(start)

    async def tell(engine: AsyncEngine) -> None:
        await run_demo(engine, typer.echo, secret_key=key, start=first_day)

    with_engine(tell)
    _embedded_note()


def _tour(*, minutes: int, seed: int, serve: bool, port: int | None, as_json: bool) -> None:
    from pointguard.plugin.secretbox import load_keyring
    from pointguard.tour import (
        CUSTOMERS_PER_MINUTE,
        TOUR_DAYS,
        TOUR_START,
        ServerNotStarted,
        ServerStopped,
        run_tour,
    )

    settings = load_settings()
    keys = load_keyring(settings)
    if not as_json:
        typer.echo(
            f"Demo storefront: the example program, {CUSTOMERS_PER_MINUTE * minutes} simulated"
            f" customers and their attackers over {TOUR_DAYS} days from {TOUR_START.date()}"
            f" (seed {seed}), for {minutes} min at most; "
            + ("sent as signed webhooks to the server started here" if serve else "in process")
        )
    shown = -1

    def progress(done: int, total: int) -> None:
        nonlocal shown
        percent = 100 * done // max(total, 1)
        if percent != shown:
            shown = percent
            bar = "#" * (percent // 4)
            typer.echo(f"\r[{bar:<25}] {done}/{total} events ({percent}%)", err=True, nl=False)

    async def tour(engine: AsyncEngine) -> bool:
        try:
            done = await run_tour(
                engine,
                settings,
                keys,
                seed=seed,
                minutes=minutes,
                serve=serve,
                progress=progress,
                port=port,
            )
        except ServerNotStarted as error:
            typer.echo(f"demo: {error}", err=True)
            raise typer.Exit(code=1) from error
        except ServerStopped as error:  # Ctrl-C while the traffic streamed
            typer.echo(f"\n{error}", err=True)
            raise typer.Exit(code=130) from error
        typer.echo("", err=True)
        summary = done.summary
        if done.invitation is not None:
            summary = {**summary, "open_next": done.invitation.as_json()}
        if as_json:
            typer.echo(json.dumps(summary, indent=None, sort_keys=False))
        else:
            for line in summary_lines(done.summary):
                typer.echo(line)
        if done.server is not None and done.invitation is not None:
            if not as_json:
                typer.echo("\nOpen next (the server runs until Ctrl-C):")
                for line in done.invitation.lines():
                    typer.echo(f"  {line}")
            with contextlib.suppress(asyncio.CancelledError):
                await done.server.task  # until Ctrl-C, which uvicorn catches to shut down
        return bool(done.summary["ledger_verify"]["ok"])

    ok = with_engine(tour)
    if not as_json:
        _embedded_note()
    if not ok:
        raise typer.Exit(code=1)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The summary in words."""
    caught = [k for k, v in s["attacks"].items() if v["caught"]]
    missed = [k for k, v in s["attacks"].items() if not v["caught"]]
    verify = s["ledger_verify"]
    verdict = "all checks pass" if verify["ok"] else "BROKEN: " + "; ".join(verify["problems"])
    lines = [
        f"\nMerchant {s['merchant_id']}, simulated calendar {s['calendar_start'][:10]} to"
        f" {s['calendar_end'][:10]} (the wall clock is not read)",
        f"Events: {s['events_sent']} sent, {s['events_refused']} refused"
        + (f", {s['events_not_applied']} not applied yet" if s["events_not_applied"] else ""),
        f"Members: {s['members']}, orders: {s['orders']}",
        f"Points: {s['points_issued']} issued, {s['points_pending']} pending,"
        f" {s['points_released']} released, {s['points_held']} held by the fraud guard,"
        f" {s['points_forfeited']} forfeited, {s['points_expired']} expired",
        f"Liability: {s['liability_points']} points owed to members",
        f"Fraud cases: {s['cases_opened']} opened, {s['cases_open']} waiting for a reviewer",
        f"Attacks: {s['attacks_caught']} caught, {s['attacks_missed']} missed",
    ]
    for kind in caught + missed:
        v = s["attacks"][kind]
        said = "caught" if v["caught"] else "missed"
        lines.append(f"  {kind:<26} {said}: {v['held_events']} of {v['events']} events held")
    lines.append(f"ledger verify: {verify['entries_sealed']} entries sealed, {verdict}")
    return lines


def _embedded_note() -> None:
    settings = load_settings()
    if settings.database_url is None:
        typer.echo(
            f"\nThe embedded PostgreSQL ({settings.embedded_pg_dir}) keeps running for the next"
            " command: `pointguard db status` shows it, `pointguard db stop` stops it."
        )
