"""Expected failures of mutations, as typed results a client can switch on (`__typename`), each
with a stable `code` and a message for people. The one place where the program's, the
ledger's and the guard's typed errors become GraphQL results; anything else a resolver raises
is an error of the response (`errors.py`)."""

from __future__ import annotations

import strawberry

from pointguard import errors
from pointguard.program.rewards.catalogue import Reason


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


@strawberry.type(description="The redemption was completed: the order was paid with it.")
class RedemptionCompleted(Problem):
    pass


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


def expected_problem(error: errors.PointGuardError) -> Problem:
    """The result type for `error`, which is raised again when it is not an expected one."""
    problem = problem_of(error)
    if problem is None:
        raise error
    return problem


ALL_PROBLEMS: tuple[type[Problem], ...] = (
    InsufficientPoints,
    RewardUnavailable,
    TierRequired,
    MemberUnderReview,
    NotFound,
    ReservationLapsed,
    RedemptionCompleted,
    LeaderboardDisabled,
    ReferralsDisabled,
)
