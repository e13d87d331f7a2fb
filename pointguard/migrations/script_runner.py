"""Run a multi-statement SQL script inside the migration's transaction.

SQLAlchemy's asyncpg adapter prepares every statement, and PostgreSQL refuses to prepare more
than one command; the asyncpg connection's own `execute` without arguments sends the script as
one simple query, in the same transaction Alembic opened.
"""

from alembic import op
from sqlalchemy.util import await_


def execute_script(sql: str) -> None:
    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on an open connection"
    await_(driver.execute(sql))
