"""Database access: the embedded PostgreSQL bootstrap, migrations, the engine and transactions.

PostgreSQL is the only store. With no `DATABASE_URL` we start PostgreSQL 16 from the `pgserver`
package in the data folder, so nothing needs installing by hand; it keeps running between
commands, and `embedded_server` / `stop_embedded_postgres` are how an operator sees and stops
it (`pointguard db`). SQLAlchemy owns the engine, the
connection pool and the migrations; the ledger's hot paths talk to the asyncpg connection that
SQLAlchemy's pool hands out, because their multi-row `unnest` statements and prepared-statement
reuse are where the throughput comes from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pointguard.config import Settings
from pointguard.errors import ConcurrentChange, EmbeddedServerError, EmbeddedServerInUse

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Deadlocks and serialization failures are resolved by running the whole transaction again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
MAX_TRANSACTION_ATTEMPTS = 8
# What a background loop survives and tries again on its next pass: the database away, or
# refusing the work for now (a restart, a failover, exhausted connections).
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    SQLAlchemyError,
    OSError,
)

# pgserver runs PostgreSQL as this system user when we are root (PostgreSQL refuses root), and
# lists the processes holding a handle on a server in this file of its data folder.
PGSERVER_OS_USER = "pgserver"
PGSERVER_HANDLES_FILE = ".handle_pids.json"
STOP_TIMEOUT_S = 60  # a fast shutdown ends sessions and checkpoints; seconds on a small database
PRIVATE_DIR_MODE = 0o700

ResultT = TypeVar("ResultT")
OpParams = ParamSpec("OpParams")
PgConnection = Any  # asyncpg ships no type information; this names what we pass around.


@dataclass(frozen=True)
class EmbeddedServer:
    """The embedded PostgreSQL in `pg_dir` as the operating system sees it now: `pid` and `url`
    (libpq form, for `psql`) are set while its postmaster runs; `users` are the live processes
    other than this one holding a pgserver handle on it (PointGuard servers, workers, tests)."""

    pg_dir: Path
    created: bool
    pid: int | None
    url: str | None
    size_bytes: int
    version: str
    users: tuple[int, ...]

    @property
    def running(self) -> bool:
        return self.pid is not None


def start_embedded_postgres(pg_dir: Path) -> str:
    """Start (or join) the embedded server in `pg_dir` and return its SQLAlchemy URL.

    The server keeps running after this process exits, so the next start is instant and a
    crashed process cannot leave the data folder half-stopped; `stop_embedded_postgres` ends it.
    """
    _import_pgserver()
    from pgserver.postgres_server import get_server

    make_private_dir(pg_dir)
    server = get_server(pg_dir, cleanup_mode=None)
    return async_url(server.get_uri())


def scratch_postgres(folder: Path) -> Any:
    """A throwaway embedded server in `folder` (for the tests and the benchmarks): its
    `get_uri()` connects, and its `cleanup()` stops it and deletes the folder."""
    _import_pgserver()
    from pgserver.postgres_server import get_server

    return get_server(folder, cleanup_mode="delete")


def make_private_dir(path: Path) -> None:
    """Make `path` and its missing parents readable by this user only (0700): the data folder
    holds the credential keys and the embedded database. An existing folder keeps the mode its
    owner gave it."""
    for folder in reversed((path, *path.parents)):
        if not folder.exists():
            folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def embedded_server(pg_dir: Path) -> EmbeddedServer:
    """Read the embedded server's state from its data folder, without starting it: the
    postmaster's own `postmaster.pid` and whether that process is alive, as `pg_ctl status`
    does."""
    _import_pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import PostmasterInfo

    pg_dir = pg_dir.expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pg_dir) if pg_dir.is_dir() else None
    running = info is not None and info.is_running()
    version = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_config"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return EmbeddedServer(
        pg_dir=pg_dir,
        created=(pg_dir / "PG_VERSION").exists(),
        pid=info.pid if info is not None and running else None,
        url=info.get_uri() if info is not None and running else None,
        size_bytes=_folder_bytes(pg_dir),
        version=version,
        users=_handle_holders(pg_dir),
    )


def stop_embedded_postgres(pg_dir: Path, *, force: bool = False) -> EmbeddedServer | None:
    """Stop the embedded server's postmaster (`pg_ctl stop`, fast mode: sessions end, committed
    work is safe) and return what was stopped; None if it was not running. pgserver stops a
    server only when its last handle closes, which a command never is when a server runs
    elsewhere, so this asks PostgreSQL itself. Refuses with `EmbeddedServerInUse` while other
    PointGuard processes hold it, unless `force`."""
    server = embedded_server(pg_dir)  # first: it imports pgserver quietly
    from pgserver._commands import POSTGRES_BIN_PATH

    if not server.running:
        return None
    if server.users and not force:
        pids = ", ".join(str(pid) for pid in server.users)
        raise EmbeddedServerInUse(
            f"the embedded PostgreSQL in {server.pg_dir} is in use by process(es) {pids};"
            " stop them first, or pass --force"
        )
    stop = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pg_dir), "-m", "fast", "-w"]
    try:
        subprocess.run(
            [*stop, "-t", str(STOP_TIMEOUT_S), "stop"],
            user=PGSERVER_OS_USER if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            check=True,
            timeout=STOP_TIMEOUT_S + 5,
        )
    except subprocess.CalledProcessError as error:
        raise EmbeddedServerError(f"pg_ctl stop failed: {error.stderr.strip()}") from error
    return server


def _import_pgserver() -> None:
    """Import pgserver without the warning its platformdirs gives on import wherever
    XDG_RUNTIME_DIR is unset (containers, CI, cron): pgserver falls back to a folder in /tmp,
    which is what we want, and the warning on every command helped no one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        import pgserver  # noqa: F401  (imported for its side effect: now in sys.modules)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except FileNotFoundError:  # a WAL segment or temp file gone while we counted
                continue
    return total


def _handle_holders(pg_dir: Path) -> tuple[int, ...]:
    """Live processes, other than this one, in pgserver's list of the server's users (a
    process killed without its exit handler leaves its pid behind, so each is checked)."""
    try:
        pids = json.loads((pg_dir / PGSERVER_HANDLES_FILE).read_text())
    except FileNotFoundError:
        return ()
    return tuple(pid for pid in pids if pid != os.getpid() and _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def async_url(url: str) -> str:
    """Turn a libpq-style URL into the SQLAlchemy asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def libpq_url(url: str) -> str:
    """The same server as a plain `postgresql://` URL, for asyncpg and PostgreSQL's own tools."""
    return "postgresql://" + async_url(url)[len("postgresql+asyncpg://") :]


def socket_dir(url: str) -> str | None:
    """The unix-socket directory of a URL such as the embedded server's, if it has one."""
    hosts = parse_qs(urlsplit(url).query).get("host")
    return hosts[0] if hosts else None


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return async_url(settings.database_url)
    return start_embedded_postgres(settings.embedded_pg_dir)


def rows_affected(status: str) -> int:
    """The row count of a command tag such as `DELETE 5000` or `UPDATE 2`."""
    return int(status.split()[-1])


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
    )


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration. Safe to run from several processes at once."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.begin() as conn:
        # One migrator at a time; the others wait and then find nothing to do.
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        await conn.run_sync(upgrade)


async def migrations_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest migration this code knows."""

    def check(connection: Connection) -> bool:
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        return MigrationContext.configure(connection).get_current_revision() == head

    async with engine.connect() as conn:
        return await conn.run_sync(check)


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[PgConnection]:
    """Check out the pool's asyncpg connection, outside any transaction.

    SQLAlchemy's reset on return rolls back only the transactions it began, not those begun
    on the asyncpg connection beneath it; so a connection handed back inside one (a task
    cancelled while its ROLLBACK was on the way) is closed, never pooled: pooled, it kept the
    transaction's locks and turned the next user's transaction into an uncommitted savepoint.
    """
    async with engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        pg: PgConnection = fairy.driver_connection
        try:
            yield pg
        finally:
            if pg.is_in_transaction():
                log.warning("closing a connection handed back inside a transaction")
                await conn.invalidate()


async def in_transaction(
    engine: AsyncEngine, work: Callable[[PgConnection], Awaitable[ResultT]], *, begin: bool = True
) -> ResultT:
    """Run `work` in one transaction, running it again after a deadlock, a serialization
    failure or a `ConcurrentChange`; `work` must therefore do nothing outside the database.

    `begin=False` is for work that makes its own transaction when it needs one (such as
    `post_entries`, whose one-statement path needs none): it saves two round trips.
    """
    for attempt in range(1, MAX_TRANSACTION_ATTEMPTS + 1):
        try:
            async with connection(engine) as pg:
                if not begin:
                    return await work(pg)
                async with pg.transaction():
                    return await work(pg)
        except (asyncpg.PostgresError, ConcurrentChange) as error:
            state = getattr(error, "sqlstate", None)
            if isinstance(error, asyncpg.PostgresError) and state not in RETRYABLE_SQLSTATES:
                raise
            if attempt == MAX_TRANSACTION_ATTEMPTS:
                raise
            log.info("retrying transaction attempt=%d reason=%s", attempt, state or error)
            await asyncio.sleep(0.001 * 2**attempt)
    raise AssertionError("unreachable")


async def run_in_transaction(
    engine: AsyncEngine,
    op: Callable[Concatenate[PgConnection, OpParams], Awaitable[ResultT]],
    *args: OpParams.args,
    **kwargs: OpParams.kwargs,
) -> ResultT:
    """`op(pg, *args, **kwargs)` in its own transaction, with `in_transaction`'s retries."""
    return await in_transaction(engine, lambda pg: op(pg, *args, **kwargs))
