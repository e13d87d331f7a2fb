"""`pointguard graphql`: the API's schema as SDL, for client code generators and for
`docs/schema.graphql` (a test fails when that file and the code differ)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The GraphQL API's schema.", no_args_is_help=True)


@app.command("schema")
def graphql_schema() -> None:
    """Print the schema (SDL) that `/graphql` serves."""
    from pointguard.graphql.schema import build_schema

    typer.echo(build_schema(production=False).as_str())
