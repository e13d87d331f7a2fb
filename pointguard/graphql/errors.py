"""The one place where what a resolver raised becomes an error of the GraphQL response: a
PointGuard error keeps its message and gets its `code` in `extensions`; anything else is
logged with its traceback and answered as `internal_error`, so no stack trace, SQL or value
from the database ever reaches a caller. Validation errors (unknown fields, the depth and
alias limits) keep graphql-core's message and get the code `invalid_query`."""

from __future__ import annotations

import logging

import asyncpg
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from pointguard.errors import InternalError, PointGuardError, QueryRefused

log = logging.getLogger(__name__)

INVALID_QUERY = "invalid_query"


class PointGuardErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None:
            code, message = INVALID_QUERY, error.message
        elif isinstance(original, PointGuardError):
            code, message = original.code, str(original)
        elif isinstance(original, asyncpg.CharacterNotInRepertoireError):
            # A NUL written in a way the endpoint's check does not see (a GraphQL `\u{0}`).
            code, message = QueryRefused.code, "a NUL character cannot be stored"
        else:
            log.error("unexpected error in a resolver", exc_info=original)
            code, message = InternalError.code, "internal error; see the server's logs"
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code},
        )
