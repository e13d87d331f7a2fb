"""The `pointguard` command: serve, migrate, demo, upkeep; merchants, members, programs, the
ledger, the inbox and the outbox, fraud review (`fraud`), the storefront simulator (`sim`),
and the embedded database (`db`).

One module per command group (`server` holds the top-level commands); `common` has what they
share. Nothing here or at the top of those modules may import prometheus_client, or anything
that does: the long-running commands first point it at the shared metrics folder
(`server._observed`), so each command imports what it needs inside its function. That also
keeps `pointguard --help` fast.
"""

from __future__ import annotations

import typer

from pointguard.cli import (
    db,
    demo,
    fraud,
    inbox,
    keys,
    ledger,
    member,
    merchant,
    outbox,
    program,
    schema,
    server,
    sim,
)

app = typer.Typer(
    help="PointGuard: a loyalty engine on a double-entry points ledger.", no_args_is_help=True
)
app.add_typer(server.app)  # no name: its commands stand at the top level
app.add_typer(demo.app)  # no name: `pointguard demo`
app.add_typer(ledger.app, name="ledger")
app.add_typer(program.app, name="program")
app.add_typer(inbox.app, name="inbox")
app.add_typer(outbox.app, name="outbox")
app.add_typer(merchant.app, name="merchant")
app.add_typer(member.app, name="member")
app.add_typer(fraud.app, name="fraud")
app.add_typer(sim.app, name="sim")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(schema.app, name="graphql")


def main() -> None:
    app()
