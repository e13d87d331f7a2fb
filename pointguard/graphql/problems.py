"""Expected failures of mutations, as typed results a client can switch on (`__typename`), each
with a stable `code` and a message for people. The one place where the program's, the
ledger's and the guard's typed errors become GraphQL results; anything else a resolver raises
is an error of the response (`errors.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from pointguard import errors
from pointguard.fraud.cases import CaseStatus
from pointguard.program.rewards.catalogue import Reason

ResultT = TypeVar("ResultT")

strawberry.enum(CaseStatus, description="Where a review case stands.")


@strawberry.interface(description="Why a mutation did not go through; nothing was changed.")
class Problem:
    code: str
    message: str


@strawberry.type
class InsufficientPoints(Problem):
    available_points: int


@strawberry.type
class RewardUnavailable(Problem):
    reward_id: strawberry.ID
    reason: str = strawberry.field(description="out_of_stock, per_member_limit_reached, …")


@strawberry.type(description="The reward is for members of other tiers.")
class TierRequired(Problem):
    reward_id: strawberry.ID


@strawberry.type(description="The member has an open fraud review case, or is frozen.")
class MemberUnderReview(Problem):
    pass


@strawberry.type(description="No such member, redemption or case for this merchant.")
class NotFound(Problem):
    pass


@strawberry.type(description="A voided reservation the member's points no longer cover.")
class ReservationLapsed(Problem):
    available_points: int


@strawberry.type(description="A value the operation cannot take (a badly formed or used name).")
class InvalidInput(Problem):
    pass


@strawberry.type
class FieldProblem:
    field: str = strawberry.field(description="Where in the document: `rewards[2].cost_points`.")
    message: str


@strawberry.type(description="A program document with problems; nothing was saved.")
class ProgramRejected(Problem):
    problems: list[FieldProblem]


@strawberry.type(description="The redemption was completed: the order was paid with it.")
class RedemptionCompleted(Problem):
    pass


@strawberry.type(
    description="The review case was decided before, perhaps a moment ago by another reviewer;"
    " `status` says how (the message says by whom and when)."
)
class CaseAlreadyDecided(Problem):
    case_id: strawberry.ID
    status: CaseStatus = strawberry.field(description="CLEARED, CONFIRMED or ESCALATED.")


@strawberry.type(description="The merchant's program has no leaderboard.")
class LeaderboardDisabled(Problem):
    pass


@strawberry.type(description="The merchant's program has no referrals.")
class ReferralsDisabled(Problem):
    pass


def problem_of(error: errors.PointGuardError) -> Problem | None:
    """The result type for an expected failure; None for one that is not expected here."""
    text = str(error)
    match error:
        case errors.InsufficientPoints():
            return InsufficientPoints(
                code=error.code, message=text, available_points=error.available_points
            )
        case errors.RewardUnavailable() if error.reason == Reason.TIER_GATED:
            return TierRequired(
                code="tier_required", message=text, reward_id=strawberry.ID(error.reward_id)
            )
        case errors.RewardUnavailable():
            return RewardUnavailable(
                code=error.code,
                message=text,
                reward_id=strawberry.ID(error.reward_id),
                reason=error.reason,
            )
        case errors.MemberUnderReview():
            return MemberUnderReview(code=error.code, message=text)
        case errors.NotFound():
            return NotFound(code=error.code, message=text)
        case errors.UnknownCase():  # another merchant's case answers exactly so too
            return NotFound(code=errors.NotFound.code, message=text)
        case errors.CaseAlreadyDecided():
            return CaseAlreadyDecided(
                code=error.code,
                message=text,
                case_id=strawberry.ID(str(error.case_id)),
                status=CaseStatus(error.status),
            )
        case errors.ReservationLapsed():
            return ReservationLapsed(
                code=error.code, message=text, available_points=error.available_points
            )
        case errors.RedemptionCompleted():
            return RedemptionCompleted(code=error.code, message=text)
        case errors.LeaderboardDisabled():
            return LeaderboardDisabled(code=error.code, message=text)
        case errors.ReferralsDisabled():
            return ReferralsDisabled(code=error.code, message=text)
    return None


async def or_problem(work: Callable[[], Awaitable[ResultT]]) -> ResultT | Problem:
    """What `work` returns, or the expected failure that stopped it (and changed nothing);
    an unexpected error propagates."""
    try:
        return await work()
    except errors.PointGuardError as error:
        problem = problem_of(error)
        if problem is None:
            raise
        return problem
