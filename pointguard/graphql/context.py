"""What every resolver gets: the database, the verified caller and the request's `now` (from
the app's one clock, read once per request so that one answer tells one moment's story).

Reads share one connection and one read-only snapshot for the whole request, opened by the
first read and closed by the endpoint when the answer is ready: a query's fields agree with
each other, and a request costs one BEGIN/COMMIT however many fields it asks for. Resolvers
run concurrently, so they take turns on the connection. Writes (mutations) each run in a
transaction of their own, retried on a deadlock or serialization failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from asyncpg.transaction import Transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.graphql.auth import Caller, Role
from pointguard.plugin.secretbox import Keys
from pointguard.program.document.schema import Program
from pointguard.program.document.versions import program_in_force

ResultT = TypeVar("ResultT")


class RequestContext:
    def __init__(
        self, engine: AsyncEngine, caller: Caller, now: datetime, secret_key: Keys
    ) -> None:
        self.engine = engine
        self.secret_key = secret_key  # seals merchants' credentials (admin operations)
        self.caller = caller
        self.now = now
        self._turn = asyncio.Lock()
        self._opened = contextlib.AsyncExitStack()
        self._snapshot: tuple[PgConnection, Transaction] | None = None
        self._once: dict[str, asyncio.Future[Any]] = {}

    def storefront(self) -> str:
        """The merchant id, for an operation only the storefront's server may call."""
        self.caller.require(Role.STOREFRONT)
        return self.caller.merchant_id

    def customer(self) -> tuple[str, str]:
        """(merchant id, member id), for an operation about the customer the token is for."""
        self.caller.require(Role.CUSTOMER)
        assert self.caller.member_id is not None  # a customer caller always has one
        return self.caller.merchant_id, self.caller.member_id

    async def read(self, work: Callable[[PgConnection], Awaitable[ResultT]]) -> ResultT:
        """`work` in the request's read-only snapshot."""
        async with self._turn:
            if self._snapshot is None:
                pg = await self._opened.enter_async_context(db.connection(self.engine))
                snapshot = pg.transaction(isolation="repeatable_read", readonly=True)
                await snapshot.start()
                self._snapshot = (pg, snapshot)
            return await work(self._snapshot[0])

    def once(self, key: str, make: Callable[[], Awaitable[ResultT]]) -> Awaitable[ResultT]:
        """`make()`'s result, made once per request for `key` however many fields ask."""
        if key not in self._once:
            self._once[key] = asyncio.ensure_future(make())
        return self._once[key]

    async def program(self) -> Program:
        """The caller's merchant's program in force at `now`."""

        async def load() -> Program:
            merchant_id = self.caller.merchant_id
            found = await self.read(lambda pg: program_in_force(pg, merchant_id, self.now))
            return found.program

        return await self.once("program", load)

    async def write(self, work: Callable[[PgConnection], Awaitable[ResultT]]) -> ResultT:
        """`work` in one transaction, retried on a deadlock or serialization failure."""
        return await db.in_transaction(self.engine, work)

    async def close(self) -> None:
        """End the snapshot (nothing was written in it) and hand the connection back."""
        async with self._turn:
            if self._snapshot is not None:
                with contextlib.suppress(Exception):  # a broken connection is closed below
                    await self._snapshot[1].rollback()
                self._snapshot = None
            await self._opened.aclose()
