"""`pointguard merchant`: registering merchants and managing their webhook credentials. A
secret is printed only when it is made; a mistake the operator can fix is a message and exit 1,
not a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from pointguard.cli.common import in_transaction
from pointguard.config import load_settings

app = typer.Typer(help="Merchants and their webhook credentials.", no_args_is_help=True)

T = TypeVar("T")


@app.command("create")
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

    made = _merchant_command(
        lambda: in_transaction(create_merchant, key, name, endpoint_url=endpoint)
    )
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


@app.command("set-endpoint")
def merchant_set_endpoint(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    url: Annotated[str, typer.Argument(help="URL our signed webhooks are delivered to.")],
) -> None:
    """Deliver the merchant's outbound webhooks to URL."""
    from pointguard.plugin.merchants import set_endpoint

    _merchant_command(lambda: in_transaction(set_endpoint, merchant, url))
    typer.echo(f"merchant {merchant}: webhooks are delivered to {url}")


@app.command("rotate-secret")
def merchant_rotate_secret(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
) -> None:
    """Add a new inbound webhook secret and print it; the previous one stays valid until the
    next rotation, so the storefront can switch without dropped webhooks."""
    from pointguard.plugin.merchants import rotate_inbound_secret

    key = _credential_key()
    typer.echo(_merchant_command(lambda: in_transaction(rotate_inbound_secret, key, merchant)))


@app.command("set-jwks")
def merchant_set_jwks(
    merchant: Annotated[str, typer.Argument(help="The merchant id.")],
    url: Annotated[
        str, typer.Argument(help="The storefront's JWKS, e.g. https://shop/.well-known/jwks.json")
    ],
) -> None:
    """Verify the merchant's Saleor-style webhooks with the RS256 keys published at URL."""
    from pointguard.plugin.merchants import set_jwks_url

    _merchant_command(lambda: in_transaction(set_jwks_url, merchant, url))
    typer.echo(f"merchant {merchant}: Saleor-style webhooks are verified with the keys at {url}")


@app.command("set-adapter-secret")
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
    _merchant_command(lambda: in_transaction(set_adapter_secret, key, merchant, sender, secret))
    typer.echo(f"merchant {merchant}: {sender} webhooks are verified with the secret given")


@app.command("set-sender-key")
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
    _merchant_command(lambda: in_transaction(set_inbound_public_key, merchant, raw))
    typer.echo(f"merchant {merchant}: v1a signatures are verified with the key given")


def _credential_key() -> bytes:
    """The key for credentials at rest, or a clear message and exit 1."""
    from pointguard.plugin.secretbox import load_key

    return _merchant_command(lambda: load_key(load_settings()))


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
