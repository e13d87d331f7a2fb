"""A pooled connection never goes back to the pool inside a transaction.

The hot paths use the asyncpg connection under SQLAlchemy's pool directly, so SQLAlchemy's
reset-on-return knows nothing of their transactions. A task cancelled while its transaction's
ROLLBACK was on its way (a client that gave up, a deadline) left the server-side transaction
open on a pooled connection: its locks stayed held, and the next user's `transaction()` became
a savepoint inside it that nobody committed. Seen in CI as a hang: racing secret rotations
waited forever on a merchant row locked by a connection idle in the pool.
"""

import asyncio

from pointguard import db


async def test_a_connection_left_in_a_transaction_is_not_pooled_again(database_url):
    engine = db.create_engine(database_url, pool_size=1)
    try:
        async with db.connection(engine) as pg:
            await pg.execute("BEGIN")  # what a cancelled task's half-closed transaction leaves
            await pg.execute("SELECT pg_advisory_xact_lock(4242)")
            assert pg.is_in_transaction()
        async with db.connection(engine) as pg:  # the pool's only connection, or a new one
            assert not pg.is_in_transaction()
            assert await pg.fetchval("SELECT pg_try_advisory_xact_lock(4242)")
    finally:
        await engine.dispose()


async def test_work_cancelled_mid_transaction_leaves_no_lock_behind(engine, merchant):
    started = asyncio.Event()

    async def locks_then_waits(pg):
        await pg.execute("SELECT pg_advisory_xact_lock(hashtext($1))", merchant)
        started.set()
        await pg.execute("SELECT pg_sleep(30)")

    task = asyncio.create_task(db.in_transaction(engine, locks_then_waits))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with db.connection(engine) as pg:
        assert await asyncio.wait_for(
            pg.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", merchant), 5
        )
        await pg.execute("SELECT pg_advisory_unlock(hashtext($1))", merchant)
