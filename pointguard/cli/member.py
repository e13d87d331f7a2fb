"""`pointguard member`: a member as the customer would see them (balances, tier, points on
their way and the latest movements, in the ledger's customer-readable descriptions), for
support and for checking an integration without writing Python."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import JsonOutput, MerchantId, with_engine

if TYPE_CHECKING:
    from pointguard.ledger import PostedEntry

app = typer.Typer(help="Members' points, as the customer sees them.", no_args_is_help=True)

MAX_PENDING_LISTED = 100

# Each pending lot is one earn, still waiting for its return window (or a fraud review).
SELECT_PENDING_LOTS = """
SELECT l.pending_points, l.release_at, l.release_held, e.description
FROM ledger_lots l
JOIN ledger_entries e ON e.merchant_id = l.merchant_id AND e.entry_id = l.lot_id
WHERE l.merchant_id = $1 AND l.member_id = $2 AND l.pending_points > 0
ORDER BY l.release_at NULLS LAST, l.lot_id
LIMIT $3
"""

# A member's accounts (`ledger.AccountKind` values), in the order the customer reads them.
MEMBER_KINDS = ("available", "pending", "reserved")


@app.command("show")
def member_show(
    merchant: MerchantId,
    customer: Annotated[
        str, typer.Argument(help="The customer id the storefront sends (the member id).")
    ],
    entries: Annotated[
        int,
        typer.Option(min=1, help="How many of the latest entries (one history page at most)."),
    ] = 10,
    as_json: JsonOutput = False,
) -> None:
    """Show a member's balances, tier, pending points with the day each is released, and the
    latest entries of their ledger, newest first. Exits 1 for an unknown merchant or member."""
    from pointguard.ledger import member_balances, member_history
    from pointguard.program.members import member_exists, member_tier

    async def read(engine: AsyncEngine) -> dict[str, Any] | None:
        async with db.connection(engine) as pg, pg.transaction(isolation="repeatable_read"):
            if not await member_exists(pg, merchant, customer):
                return None
            balances = await member_balances(pg, merchant, customer)
            pending = await pg.fetch(SELECT_PENDING_LOTS, merchant, customer, MAX_PENDING_LISTED)
            return {
                "merchant_id": merchant,
                "member_id": customer,
                "tier": await member_tier(pg, merchant, customer),
                "available_points": balances.available_points,
                "pending_points": balances.pending_points,
                "reserved_points": balances.reserved_points,
                "pending": [
                    {
                        "points": lot["pending_points"],
                        "release_at": lot["release_at"] and lot["release_at"].isoformat(),
                        "held": lot["release_held"],
                        "description": lot["description"],
                    }
                    for lot in pending
                ],
                "entries": [
                    _entry_fields(entry)
                    for entry in (
                        await member_history(pg, merchant, customer, limit=entries)
                    ).entries
                ],
            }

    shown = with_engine(read, merchant=merchant)
    if shown is None:
        typer.echo(f"merchant {merchant!r} has no member {customer!r}", err=True)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    _print_member(shown)


def _entry_fields(entry: PostedEntry) -> dict[str, Any]:
    """An entry as the member sees it: when, what (the description written for customers),
    and how each of their balances moved."""
    from pointguard.ledger import AccountKind

    return {
        "entry_id": entry.entry_id,
        "at": entry.created_at.isoformat(),
        "kind": entry.kind.value,
        "description": entry.description,
        **{f"{kind}_points": entry.member_delta(AccountKind(kind)) for kind in MEMBER_KINDS},
    }


def _print_member(shown: dict[str, Any]) -> None:
    tier = f"tier {shown['tier']}" if shown["tier"] else "no tier"
    typer.echo(
        f"{shown['member_id']} at {shown['merchant_id']}: {shown['available_points']} points"
        f" available, {shown['pending_points']} pending, {shown['reserved_points']} reserved;"
        f" {tier}"
    )
    if shown["pending"]:
        typer.echo("pending:")
    for lot in shown["pending"]:
        when = f"released on {lot['release_at'][:10]}" if lot["release_at"] else "no release date"
        held = " (held for review)" if lot["held"] else ""
        typer.echo(f"  {lot['points']} points, {when}{held}: {lot['description']}")
    typer.echo(f"latest entries, newest first ({len(shown['entries'])}):")
    for entry in shown["entries"]:
        moves = ", ".join(
            f"{entry[f'{kind}_points']:+d} {kind}"
            for kind in MEMBER_KINDS
            if entry[f"{kind}_points"]
        )
        typer.echo(f"  {entry['at'][:10]}  {moves:<30} {entry['description']}")
