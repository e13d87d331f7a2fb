"""What the command groups share: every command works on a migrated database, names a merchant
that exists, and reports a mistake the operator can fix as one line on stderr and exit 1, not a
traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Concatenate, ParamSpec, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.config import load_settings
from pointguard.db import PgConnection
from pointguard.errors import (
    CaseAlreadyDecided,
    EmbeddedServerError,
    EmbeddedServerInUse,
    MerchantExists,
    MerchantInvalid,
    ProgramNotFound,
    SecretKeyInvalid,
    UnknownCase,
    UnknownMerchant,
)

ResultT = TypeVar("ResultT")
OpParams = ParamSpec("OpParams")

# The parameters many commands take, said once.
MerchantId = Annotated[str, typer.Argument(help="The merchant id.")]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print JSON (one object or array), for scripts.")
]

# Errors whose message tells the operator what to fix; anything else is a bug and keeps its
# traceback.
OPERATOR_ERRORS: tuple[type[Exception], ...] = (
    CaseAlreadyDecided,
    EmbeddedServerError,
    EmbeddedServerInUse,
    MerchantExists,
    MerchantInvalid,
    ProgramNotFound,
    SecretKeyInvalid,
    UnknownCase,
    UnknownMerchant,
)

# A merchant is one registered with `merchant create`, or one that the Python API gave a
# program or ledger entries without registering it (as embedders and older demos did). Each
# test is one index probe.
SELECT_MERCHANT_EXISTS = """
SELECT EXISTS (SELECT 1 FROM merchants WHERE merchant_id = $1)
    OR EXISTS (SELECT 1 FROM program_versions WHERE merchant_id = $1)
    OR EXISTS (SELECT 1 FROM ledger_entries WHERE merchant_id = $1)
"""


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn an `OPERATOR_ERRORS` error into its message on stderr and exit 1."""
    try:
        yield
    except OPERATOR_ERRORS as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error


def with_engine(
    work: Callable[[AsyncEngine], Awaitable[ResultT]], *, merchant: str | None = None
) -> ResultT:
    """Connect (starting the embedded PostgreSQL when DATABASE_URL is unset), migrate, check
    that `merchant` (when given) exists, work. A mistake the operator can fix exits 1."""
    settings = load_settings()

    async def run() -> ResultT:
        engine = db.create_engine(db.resolve_database_url(settings), pool_size=4)
        try:
            await db.migrate(engine)
            if merchant is not None:
                async with db.connection(engine) as pg:
                    await require_merchant(pg, merchant)
            return await work(engine)
        finally:
            await engine.dispose()

    with operator_errors():
        return asyncio.run(run())


def in_transaction(
    op: Callable[Concatenate[PgConnection, OpParams], Awaitable[ResultT]],
    *args: OpParams.args,
    **kwargs: OpParams.kwargs,
) -> ResultT:
    """`op(pg, *args, **kwargs)` in a transaction of its own, on a migrated database."""
    return with_engine(lambda engine: db.run_in_transaction(engine, op, *args, **kwargs))


async def require_merchant(pg: PgConnection, merchant_id: str) -> None:
    """Raise `UnknownMerchant` unless `merchant_id` is a merchant's id: a typo or a display
    name must not read as an empty merchant, nor be written to as a new one."""
    if not await pg.fetchval(SELECT_MERCHANT_EXISTS, merchant_id):
        raise UnknownMerchant(f"no merchant {merchant_id!r}")


def utc(moment: datetime) -> datetime:
    """A command-line time: one without a zone is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def given_or_now(moment: datetime | None) -> datetime:
    """A command-line time (`utc`), or else now by the settings' clock (time is an input)."""
    return utc(moment) if moment is not None else load_settings().clock()
