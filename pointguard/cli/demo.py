"""`pointguard demo`: the example program told as one member's story, on a simulated calendar."""

from __future__ import annotations

import typer

from pointguard.cli.common import with_engine

app = typer.Typer()


@app.command()
def demo() -> None:
    """Walk one member through earning, release, a checkout and expiry, and print the ledger."""
    from pointguard.demo import run_demo

    with_engine(lambda engine: run_demo(engine, typer.echo))
