"""`pointguard merchant`: registering merchants, finding them again, and managing their webhook
credentials. A secret is printed only when it is made; `list` and `show` never print one, so a
lost `create` output loses the secrets (rotate them) but not the merchant."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.cli.common import (
    JsonOutput,
    MerchantId,
    in_transaction,
    operator_errors,
    with_engine,
)
from pointguard.config import load_settings
from pointguard.plugin.api_keys import KeyRole

app = typer.Typer(help="Merchants and their webhook credentials.", no_args_is_help=True)

MAX_LISTED = 10_000
# What each field `create` prints is for: the two whsec_ secrets look alike, and a storefront
# that signs with the outbound one gets nothing but 401s.
CREATED_FIELDS = {
    "webhook_secret": "webhook secret: the storefront signs its webhooks to us with this",
    "shopify_webhook_secret": (
        "Shopify-style signing secret: enter it where the shop signs webhooks to"
        " /webhooks/M/shopify (derived from the webhook secret; ignored once set-adapter-secret"
        " sets one)"
    ),
    "woocommerce_webhook_secret": (
        "WooCommerce-style signing secret: enter it as the WooCommerce webhook's secret for"
        " /webhooks/M/woocommerce (derived from the webhook secret; ignored once"
        " set-adapter-secret sets one)"
    ),
    "customer_token_secret": (
        "customer-token secret: the storefront signs its customers' GraphQL tokens with this"
        " (HS256; derived from the webhook secret, so it changes with it)"
    ),
    "api_key": "storefront API key: Authorization: Bearer for /graphql checkout calls",
    "outbound_public_key": "our Ed25519 public key: verifies v1a deliveries to you",
    "outbound_webhook_secret": (
        "our webhook secret: verifies v1 deliveries to you; never sign with it"
    ),
    "endpoint_url": "delivery endpoint",
}

SELECT_MERCHANTS_OLDEST_FIRST = """
SELECT merchant_id, name, endpoint_url, created_at FROM merchants
ORDER BY created_at, merchant_id LIMIT $1
"""

SELECT_MERCHANT_DETAILS = (
    "SELECT name, endpoint_url, jwks_url, created_at FROM merchants WHERE merchant_id = $1"
)

COUNT_ACTIVE_CREDENTIALS_BY_KIND = """
SELECT kind, count(*) AS active FROM merchant_credentials
WHERE merchant_id = $1 AND retired_at IS NULL GROUP BY kind ORDER BY kind
"""

COUNT_MEMBERS = "SELECT count(DISTINCT member_id) FROM ledger_accounts WHERE merchant_id = $1"


@app.command("create")
def merchant_create(
    name: Annotated[str, typer.Argument(help="The merchant's display name.")],
    endpoint: Annotated[
        str | None, typer.Option(help="URL our signed webhooks are delivered to.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Register a merchant and print its secrets and API key. They are shown only this once;
    with --json, `about` says what each one is for."""
    from pointguard.graphql.customer_tokens import derived_secrets
    from pointguard.plugin.merchants import create_merchant

    key = _credential_key()

    made = in_transaction(create_merchant, key, name, endpoint_url=endpoint)
    fields = {**dataclasses.asdict(made), **derived_secrets(made.webhook_secret)}
    if as_json:
        typer.echo(json.dumps({**fields, "about": CREATED_FIELDS}))
        return
    typer.echo(f"merchant {made.merchant_id} ({made.name}) created")
    for field, label in CREATED_FIELDS.items():
        typer.echo(f"  {label}: {fields[field] or '(none)'}")
    typer.echo("Store the secrets and the API key now: they are not shown again.")


@app.command("list")
def merchant_list(
    as_json: JsonOutput = False,
) -> None:
    """List registered merchants, oldest first: their ids (the name plus a random suffix),
    names and delivery endpoints."""

    async def find(engine: AsyncEngine) -> list[dict[str, Any]]:
        async with db.connection(engine) as pg:
            return [
                _jsonable(dict(row))
                for row in await pg.fetch(SELECT_MERCHANTS_OLDEST_FIRST, MAX_LISTED)
            ]

    merchants = with_engine(find)
    if as_json:
        typer.echo(json.dumps(merchants))
        return
    if not merchants:
        typer.echo('no merchants yet: pointguard merchant create "My Shop"')
    for m in merchants:
        endpoint = m["endpoint_url"] or "no delivery endpoint"
        typer.echo(f"{m['merchant_id']}  {m['name']}  (since {m['created_at']}, {endpoint})")


@app.command("show")
def merchant_show(
    merchant: MerchantId,
    as_json: JsonOutput = False,
) -> None:
    """Show a merchant: name, endpoints, which credentials are active (never their values),
    the program in force, members and the points it owes them."""

    async def find(engine: AsyncEngine) -> dict[str, Any]:
        from pointguard.errors import ProgramNotFound
        from pointguard.ledger import outstanding_liability
        from pointguard.program.document.versions import (
            ProgramVersion,
            program_history,
            program_in_force,
        )

        async with db.connection(engine) as pg:
            row = await pg.fetchrow(SELECT_MERCHANT_DETAILS, merchant)
            credentials = await pg.fetch(COUNT_ACTIVE_CREDENTIALS_BY_KIND, merchant)
            in_force: ProgramVersion | None
            try:
                in_force = await program_in_force(pg, merchant, load_settings().clock())
            except ProgramNotFound:
                in_force = None
            return _jsonable(
                {
                    "merchant_id": merchant,
                    "registered": row is not None,
                    **(dict(row) if row else {}),
                    "active_credentials": {r["kind"]: r["active"] for r in credentials},
                    "program": in_force
                    and {"name": in_force.program.name, "version": in_force.version},
                    "program_versions": len(await program_history(pg, merchant)),
                    "members": await pg.fetchval(COUNT_MEMBERS, merchant),
                    "outstanding_points": await outstanding_liability(pg, merchant),
                }
            )

    shown = with_engine(find, merchant=merchant)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    typer.echo(f"merchant {merchant}")
    if not shown["registered"]:
        typer.echo("  not registered with `merchant create`: ledger and program only")
    for field in ("name", "created_at", "endpoint_url", "jwks_url"):
        if field in shown:
            typer.echo(f"  {field.replace('_', ' ')}: {shown[field] or '(none)'}")
    active = ", ".join(f"{kind} x{n}" for kind, n in shown["active_credentials"].items())
    typer.echo(f"  active credentials: {active or '(none)'}")
    program = shown["program"]
    typer.echo(
        f"  program in force: {program['name']!r} version {program['version']}"
        f" of {shown['program_versions']}"
        if program
        else "  program in force: none (pointguard program load FILE --merchant M)"
    )
    typer.echo(
        f"  members: {shown['members']}, owed {shown['outstanding_points']} points"
        " (available + pending + reserved)"
    )


@app.command("set-endpoint")
def merchant_set_endpoint(
    merchant: MerchantId,
    url: Annotated[str, typer.Argument(help="URL our signed webhooks are delivered to.")],
) -> None:
    """Deliver the merchant's outbound webhooks to URL."""
    from pointguard.plugin.merchants import set_endpoint

    in_transaction(set_endpoint, _credential_key(), merchant, url)
    typer.echo(f"merchant {merchant}: webhooks are delivered to {url}")


@app.command("rotate-secret")
def merchant_rotate_secret(
    merchant: MerchantId,
    as_json: JsonOutput = False,
) -> None:
    """Add a new inbound webhook secret and print it; the previous one stays valid until the
    next rotation, so the storefront can switch without dropped webhooks. With --json, also
    the Shopify- and WooCommerce-style signing secrets and the customer-token secret derived
    from it, which change with it."""
    from pointguard.graphql.customer_tokens import derived_secrets
    from pointguard.plugin.merchants import rotate_inbound_secret

    key = _credential_key()
    secret = in_transaction(rotate_inbound_secret, key, merchant)
    if not as_json:
        typer.echo(secret)
        return
    fields = {"webhook_secret": secret, **derived_secrets(secret)}
    typer.echo(json.dumps({**fields, "about": {f: CREATED_FIELDS[f] for f in fields}}))


@app.command("add-key")
def merchant_add_key(
    merchant: MerchantId,
    role: Annotated[
        KeyRole, typer.Option(help="storefront (checkouts), reviewer (fraud cases) or admin.")
    ],
    name: Annotated[
        str, typer.Option(help="Who holds it (alice, checkout-eu): named in the audit trail.")
    ],
) -> None:
    """Make an API key for the GraphQL API and print it; it is shown only this once."""
    from pointguard.plugin.api_keys import new_api_key

    typer.echo(in_transaction(new_api_key, merchant, role, name))


@app.command("revoke-key")
def merchant_revoke_key(
    merchant: MerchantId,
    name: Annotated[str, typer.Argument(help="The key's name (see `merchant keys`).")],
) -> None:
    """Revoke the merchant's live API key NAME: refused within seconds (servers cache keys
    for `KEY_CACHE_TTL_S`). Exits 1 when there is no such live key."""
    from pointguard.plugin.api_keys import revoke_api_key

    if not in_transaction(revoke_api_key, merchant, name):
        typer.echo(f"merchant {merchant!r} has no live API key named {name!r}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"merchant {merchant}: API key {name!r} revoked")


@app.command("keys")
def merchant_keys(
    merchant: MerchantId,
    as_json: JsonOutput = False,
) -> None:
    """List the merchant's API keys, live and revoked: name, role, when made and revoked
    (never the key)."""
    from pointguard.plugin.api_keys import list_api_keys

    listed = [
        _jsonable(dataclasses.asdict(key))
        for key in with_engine(
            lambda engine: db.run_in_transaction(engine, list_api_keys, merchant),
            merchant=merchant,
        )
    ]
    if as_json:
        typer.echo(json.dumps(listed))
        return
    for key in listed:
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "live"
        typer.echo(f"{key['name']}  {key['role']}  made {key['created_at']}  {state}")


@app.command("set-jwks")
def merchant_set_jwks(
    merchant: MerchantId,
    url: Annotated[
        str, typer.Argument(help="The storefront's JWKS, e.g. https://shop/.well-known/jwks.json")
    ],
) -> None:
    """Verify the merchant's Saleor-style webhooks with the RS256 keys published at URL."""
    from pointguard.plugin.merchants import set_jwks_url

    in_transaction(set_jwks_url, _credential_key(), merchant, url)
    typer.echo(f"merchant {merchant}: Saleor-style webhooks are verified with the keys at {url}")


@app.command("set-adapter-secret")
def merchant_set_adapter_secret(
    merchant: MerchantId,
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
    in_transaction(set_adapter_secret, key, merchant, sender, secret)
    typer.echo(f"merchant {merchant}: {sender} webhooks are verified with the secret given")


@app.command("set-sender-key")
def merchant_set_sender_key(
    merchant: MerchantId,
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
    in_transaction(set_inbound_public_key, _credential_key(), merchant, raw)
    typer.echo(f"merchant {merchant}: v1a signatures are verified with the key given")


def _credential_key() -> bytes:
    """The key for credentials at rest, or a clear message and exit 1."""
    from pointguard.plugin.secretbox import load_key

    with operator_errors():
        return load_key(load_settings())


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with times as ISO 8601, for JSON and for people alike."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
