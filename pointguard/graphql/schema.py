"""The one GraphQL schema for every caller, with its limits. `docs/schema.graphql` is this
schema printed (`pointguard graphql schema`); a test fails when the two differ."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.types import ExecutionContext

from pointguard.graphql import checkout, customer, review
from pointguard.graphql.errors import PointGuardErrors

MAX_DEPTH = 8  # the deepest real query (me { history { entries { … } } }) is 4
MAX_ALIASES = 30
MAX_TOKENS = 2_000
CACHED_DOCUMENTS = 1_000


@strawberry.type
class Query:
    me: customer.Me = strawberry.field(
        resolver=customer.me, description="The customer of the token (customer tokens only)."
    )
    quote_redemption: list[checkout.RewardQuote] = strawberry.field(
        resolver=checkout.quote_redemption, description=checkout.quote_redemption.__doc__
    )
    review_cases: review.ReviewCasePage = strawberry.field(
        resolver=review.review_cases, description=review.review_cases.__doc__
    )
    review_case: review.ReviewCaseResult = strawberry.field(
        resolver=review.review_case, description=review.review_case.__doc__
    )


@strawberry.type
class Mutation:
    reserve_redemption: checkout.ReserveResult = strawberry.mutation(
        resolver=checkout.reserve_redemption, description=checkout.reserve_redemption.__doc__
    )
    capture_redemption: checkout.CaptureResult = strawberry.mutation(
        resolver=checkout.capture_redemption, description=checkout.capture_redemption.__doc__
    )
    void_redemption: checkout.VoidResult = strawberry.mutation(
        resolver=checkout.void_redemption, description=checkout.void_redemption.__doc__
    )
    clear_case: review.CaseDecisionResult = strawberry.mutation(
        resolver=review.clear_case, description=review.clear_case.__doc__
    )
    confirm_case: review.CaseDecisionResult = strawberry.mutation(
        resolver=review.confirm_case, description=review.confirm_case.__doc__
    )
    escalate_case: review.CaseDecisionResult = strawberry.mutation(
        resolver=review.escalate_case, description=review.escalate_case.__doc__
    )


class PointGuardSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Nothing: `errors.PointGuardErrors` logs what is unexpected, once, and the callers'
        own mistakes are not the server's errors."""


def _introspection(ignored: IgnoreContext) -> bool:
    """GraphiQL's introspection query nests `ofType` deeper than any real query needs; its
    depth has graphql-core's own limit (`Maximum introspection depth exceeded`)."""
    return ignored.field_name.startswith("__")


def build_schema(*, production: bool) -> strawberry.Schema:
    """The schema with its limits; in production also without introspection."""
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH, should_ignore=_introspection),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=CACHED_DOCUMENTS),
        lambda: ValidationCache(maxsize=CACHED_DOCUMENTS),
        PointGuardErrors,
    ]
    if production:
        extensions.append(DisableIntrospection)
    return PointGuardSchema(query=Query, mutation=Mutation, extensions=extensions)
