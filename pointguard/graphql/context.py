"""What every resolver gets: the database, the verified caller and the request's `now` (from
the app's one clock, read once per request so that one answer tells one moment's story)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.db import PgConnection
from pointguard.graphql.auth import Caller, Role

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class RequestContext:
    engine: AsyncEngine
    caller: Caller
    now: datetime

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
        """`work` in one read-only snapshot, so its figures agree with each other."""
        async with (
            db.connection(self.engine) as pg,
            pg.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await work(pg)

    async def write(self, work: Callable[[PgConnection], Awaitable[ResultT]]) -> ResultT:
        """`work` in one transaction, retried on a deadlock or serialization failure."""
        return await db.in_transaction(self.engine, work)
