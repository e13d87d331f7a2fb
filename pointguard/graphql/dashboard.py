"""The merchant dashboard's figures (reviewer and admin keys): the points issued, released,
redeemed, expired and forfeited per day or week, and pending, held, available and liability at
each bucket's end. The figures and their definitions are `program.reports.points_over_time`'s;
this module only maps them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from pointguard.graphql.auth import Role
from pointguard.graphql.context import RequestContext
from pointguard.program.reports.points_over_time import (
    BucketSize,
    PointsBucket,
)
from pointguard.program.reports.points_over_time import (
    points_over_time as load_points_over_time,
)

Context = Info[RequestContext, None]

strawberry.enum(BucketSize, name="BucketSize", description="How long one bucket is (UTC).")


@strawberry.type(description="One bucket [start, end): its flows, and the balances at its end.")
class PointsInBucket:
    start: datetime
    end: datetime
    issued: int = strawberry.field(description="Points earned in the bucket.")
    released: int = strawberry.field(description="Points moved from pending to available.")
    redeemed: int
    expired: int
    forfeited: int
    pending: int = strawberry.field(description="Pending points at the bucket's end.")
    held: int = strawberry.field(
        description="Pending points at the end that the fraud guard holds for review."
    )
    available: int
    reserved: int = strawberry.field(description="Points set aside by open redemptions.")
    liability: int = strawberry.field(description="pending + available + reserved at the end.")


def _bucket(b: PointsBucket) -> PointsInBucket:
    return PointsInBucket(
        start=b.start,
        end=b.end,
        issued=b.issued_points,
        released=b.released_points,
        redeemed=b.redeemed_points,
        expired=b.expired_points,
        forfeited=b.forfeited_points,
        pending=b.pending_points,
        held=b.held_points,
        available=b.available_points,
        reserved=b.reserved_points,
        liability=b.liability_points,
    )


async def points_over_time(
    info: Context,
    start: datetime,
    end: datetime,
    bucket: Annotated[
        BucketSize, strawberry.argument(description="DAY (the default) or WEEK.")
    ] = BucketSize.DAY,
) -> list[PointsInBucket]:
    """The shop's points per bucket over [start, end) (reviewer or admin keys): buckets of a
    day or a week from `start`, the last one ending at `end`; at most 366 buckets."""
    caller = info.context.caller
    caller.require(Role.REVIEWER, Role.ADMIN)
    merchant_id = caller.merchant_id
    buckets = await info.context.read(
        lambda pg: load_points_over_time(pg, merchant_id, start=start, end=end, size=bucket)
    )
    return [_bucket(b) for b in buckets]
