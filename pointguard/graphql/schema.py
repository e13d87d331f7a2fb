"""The one GraphQL schema for every caller, with its limits. `docs/schema.graphql` is this
schema printed (`pointguard graphql schema`); a test fails when the two differ."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql.error import GraphQLError
from graphql.validation import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_limit_rule
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit_rule
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext

from pointguard.graphql import admin, checkout, customer, dashboard, review
from pointguard.graphql import rewards as account  # `rewards` is a field of Query too
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
    admin_program: admin.AdminProgram = strawberry.field(
        resolver=admin.admin_program, description=admin.admin_program.__doc__
    )
    analytics: JSON = strawberry.field(
        resolver=admin.analytics, description=admin.analytics.__doc__
    )
    api_keys: list[admin.ApiKey] = strawberry.field(
        resolver=admin.list_keys, description=admin.list_keys.__doc__
    )
    dead_letters: list[admin.DeadLetter] = strawberry.field(
        resolver=admin.dead_letters, description=admin.dead_letters.__doc__
    )
    points_over_time: list[dashboard.PointsInBucket] = strawberry.field(
        resolver=dashboard.points_over_time, description=dashboard.points_over_time.__doc__
    )
    review_cases: review.ReviewCasePage = strawberry.field(
        resolver=review.review_cases, description=review.review_cases.__doc__
    )
    review_case: review.ReviewCaseResult = strawberry.field(
        resolver=review.review_case, description=review.review_case.__doc__
    )
    review_feature_ranges: review.FeatureRanges = strawberry.field(
        resolver=review.review_feature_ranges, description=review.review_feature_ranges.__doc__
    )
    rewards: list[account.Reward] = strawberry.field(
        resolver=account.rewards, description=account.rewards.__doc__
    )
    leaderboard: account.Leaderboard = strawberry.field(
        resolver=account.leaderboard, description=account.leaderboard.__doc__
    )
    program: account.ProgramInWords = strawberry.field(
        resolver=account.program, description=account.program.__doc__
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
    validate_program: admin.ProgramValidation = strawberry.mutation(
        resolver=admin.validate_program, description=admin.validate_program.__doc__
    )
    publish_program: admin.PublishResult = strawberry.mutation(
        resolver=admin.publish_program, description=admin.publish_program.__doc__
    )
    create_api_key: admin.CreateKeyResult = strawberry.mutation(
        resolver=admin.create_api_key, description=admin.create_api_key.__doc__
    )
    revoke_api_key: admin.RevokeKeyResult = strawberry.mutation(
        resolver=admin.revoke_api_key, description=admin.revoke_api_key.__doc__
    )
    rotate_webhook_secret: admin.RotatedSecret = strawberry.mutation(
        resolver=admin.rotate_webhook_secret, description=admin.rotate_webhook_secret.__doc__
    )
    replay_dead_letters: admin.Replayed = strawberry.mutation(
        resolver=admin.replay_dead_letters, description=admin.replay_dead_letters.__doc__
    )
    create_merchant: admin.CreateMerchantResult = strawberry.mutation(
        resolver=admin.create_merchant_for_operator,
        description=admin.create_merchant_for_operator.__doc__,
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
    create_referral_link: account.ReferralResult = strawberry.mutation(
        resolver=account.create_referral_link, description=account.create_referral_link.__doc__
    )
    opt_into_leaderboard: account.LeaderboardResult = strawberry.mutation(
        resolver=account.opt_into_leaderboard, description=account.opt_into_leaderboard.__doc__
    )
    redeem_reward: checkout.ReserveResult = strawberry.mutation(
        resolver=account.redeem_reward, description=account.redeem_reward.__doc__
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


# Made once: the validation cache keys a document's result by its rules too, so rule classes
# made anew for each request (as the limiters' own constructors do) would never hit it.
LIMIT_RULES: list[type[ASTValidationRule]] = [
    depth_limit_rule(max_depth=MAX_DEPTH, should_ignore=_introspection),
    alias_limit_rule(max_alias_count=MAX_ALIASES),
]


def build_schema(*, production: bool) -> strawberry.Schema:
    """The schema with its limits; in production also without introspection."""
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        lambda: AddValidationRules(LIMIT_RULES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=CACHED_DOCUMENTS),
        lambda: ValidationCache(maxsize=CACHED_DOCUMENTS),
        PointGuardErrors,
    ]
    if production:
        extensions.append(DisableIntrospection)
    return PointGuardSchema(query=Query, mutation=Mutation, extensions=extensions)
