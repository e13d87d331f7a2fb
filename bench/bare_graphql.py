"""The baseline that `bench/graphql_speed.py` measures PointGuard's `me` against, in the same
run: the least a Strawberry server can do to answer the same query.

A schema of the same shape as PointGuard's `me` (the same type and field names, and the same
resolvers async: `balance`, `tier` and `history`), answering from memory with constant data: a
balance, a tier, and a page of `first` history entries with a next cursor. No credential is
checked, no database read, no limit applied but Strawberry's `ParserCache` and
`ValidationCache`, which PointGuard's schema has too. One Starlette route at `/graphql`, as
PointGuard has.

Served by the same uvicorn settings as `pointguard serve` (`pointguard.serving.run`, W
processes, uvloop and httptools) from a process started by the bench: `python
bench/bare_graphql.py --port P --workers W`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from baseline_server import serve_baseline
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

CACHED_DOCUMENTS = 1_000  # as PointGuard's schema
AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


@strawberry.type
class Balance:
    available: int
    pending: int
    reserved: int


@strawberry.type
class Tier:
    name: str
    benefits: list[str]


@strawberry.type
class HistoryEntry:
    id: strawberry.ID
    at: datetime
    kind: str
    description: str
    available_change: int
    pending_change: int
    reserved_change: int
    status: str | None


@strawberry.type
class HistoryPage:
    entries: list[HistoryEntry]
    next_cursor: str | None


@strawberry.type
class Me:
    member_id: strawberry.ID

    @strawberry.field
    async def balance(self) -> Balance:
        return Balance(available=1_000, pending=300, reserved=0)

    @strawberry.field
    async def tier(self) -> Tier | None:
        return Tier(name="Silver", benefits=["birthday gift"])

    @strawberry.field
    async def history(self, first: int = 20, after: str | None = None) -> HistoryPage:
        entries = [
            HistoryEntry(
                id=strawberry.ID(str(1_000 - i)),
                at=AT,
                kind="earn",
                description=f"Points for order #{100_000 + i}",
                available_change=50,
                pending_change=0,
                reserved_change=0,
                status="released",
            )
            for i in range(first)
        ]
        return HistoryPage(entries=entries, next_cursor=str(1_000 - first))


@strawberry.type
class Query:
    @strawberry.field
    def me(self) -> Me:
        return Me(member_id=strawberry.ID("m0"))


def create_app() -> Starlette:
    """The app (each uvicorn process makes its own)."""
    schema = strawberry.Schema(
        query=Query,
        extensions=[
            lambda: ParserCache(maxsize=CACHED_DOCUMENTS),
            lambda: ValidationCache(maxsize=CACHED_DOCUMENTS),
        ],
    )
    view: GraphQL[None, None] = GraphQL(schema, graphql_ide=None)
    return Starlette(routes=[Route("/graphql", view, methods=["POST"])])


if __name__ == "__main__":
    serve_baseline("bare_graphql:create_app", __doc__.splitlines()[0])
