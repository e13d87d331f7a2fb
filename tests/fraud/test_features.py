"""The guard's features of schema 2, read from the database as the pipeline stores them with
each decision, and the pure pieces behind them (the component merges, the running median, the
round's own points)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.fraud.features import (
    FEATURE_SCHEMA,
    NOT_APPLICABLE,
    new_on_old_account,
    points_in_round,
)
from pointguard.fraud.history import (
    MAX_MEDIAN_STEPS_PER_ROUND,
    load_member_links,
    median_steps,
)
from pointguard.fraud.identity import LinkKind
from pointguard.fraud.links import SeenLink, plan_merges, record_links
from pointguard.fraud.signals import Address, Signals
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed, OrderCancelled
from pointguard.program.referrals.records import referral_code
from tests.fraud.test_guard_pipeline import PROGRAM as GUARDED_PROGRAM
from tests.fraud.test_guard_pipeline import guarded, order

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

PROGRAM = (
    GUARDED_PROGRAM
    + """
[[actions]]
event = "review.published"
points = 25
description = "Thanks for your review"
per_day = 20
"""
)


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - 100 * DAY)
    return merchant


async def features_of(engine, shop, member, source):
    """The stored features of `member`'s decisions from `source`, in time order."""
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT features::text AS f, feature_schema FROM fraud_decisions"
            " WHERE merchant_id = $1 AND member_id = $2 AND source = $3 ORDER BY decided_at",
            shop,
            member,
            source,
        )
    assert {r["feature_schema"] for r in rows} == {FEATURE_SCHEMA}
    return [json.loads(r["f"]) for r in rows]


async def test_time_to_refund_and_the_refunded_share(engine, run, shop):
    await guarded(run, shop, order("ann", 1, T0))
    cancel = OrderCancelled(
        event_id="w-ann-1-cancel", member_id="ann", occurred_at=T0 + 5 * HOUR, order_id="ann-1"
    )
    await guarded(run, shop, cancel)
    await guarded(run, shop, order("ann", 2, T0 + 2 * DAY))
    first, second = [f["history"] for f in await features_of(engine, shop, "ann", "earning:order")]
    assert (first["hours_to_last_refund"], first["refunded_share_in_return_window"]) == (
        NOT_APPLICABLE,
        0.0,
    )
    assert second["hours_to_last_refund"] == pytest.approx(5.0)
    assert second["refunded_share_in_return_window"] == 0.5  # one of the two orders


async def test_a_referees_way_to_the_first_order(engine, run, shop):
    await guarded(run, shop, order("ann", 1, T0))
    code = await run(referral_code, shop, "ann")
    signup = ActionPerformed(
        event_id="w-bob-signup",
        member_id="bob",
        occurred_at=T0 + DAY,
        action="signup",
        referral_code=code,
    )
    await guarded(run, shop, signup)
    await guarded(run, shop, order("bob", 1, T0 + DAY + 6 * HOUR, amount_minor=4500))
    [referrer] = await features_of(engine, shop, "ann", "referral:referrer")
    [referee] = await features_of(engine, shop, "bob", "referral:referee")
    [bobs_order] = await features_of(engine, shop, "bob", "earning:order")
    for features in (referrer, referee, bobs_order):
        assert features["referee_hours_to_first_order"] == pytest.approx(6.0)
        assert features["first_order_over_minimum"] == pytest.approx(1.5)
    [anns_order] = await features_of(engine, shop, "ann", "earning:order")
    assert anns_order["referee_hours_to_first_order"] == NOT_APPLICABLE
    assert anns_order["first_order_over_minimum"] == NOT_APPLICABLE
    # bob's order points and welcome in one event; ann's reward alone in her 24 hours.
    assert (referee["points_24h"], referrer["points_24h"]) == (45 + 200, 500)


async def test_points_in_24_hours_against_the_merchants_running_median(engine, run, shop):
    for n in range(30):
        await guarded(run, shop, order(f"m{n}", 1, T0 + n * HOUR))
    [usual] = await features_of(engine, shop, "m29", "earning:order")
    assert usual["points_24h"] == 50
    assert usual["points_24h_over_median"] == pytest.approx(1.0, rel=0.2)
    await guarded(run, shop, order("whale", 1, T0 + 31 * HOUR, amount_minor=500_000))
    await guarded(run, shop, order("whale", 2, T0 + 32 * HOUR, amount_minor=500_000))
    first, second = await features_of(engine, shop, "whale", "earning:order")
    assert (first["points_24h"], second["points_24h"]) == (5000, 10_000)
    assert second["points_24h_over_median"] > 100
    async with db.connection(engine) as pg:
        stats = await pg.fetchrow(
            "SELECT points_24h_median, observations FROM fraud_merchant_stats"
            " WHERE merchant_id = $1",
            shop,
        )
    assert stats["observations"] == 32 and 40 < stats["points_24h_median"] < 60


async def test_reviews_in_24_hours_and_the_review_velocity_rule(engine, run, shop):
    await guarded(run, shop, order("cat", 1, T0 - DAY))  # a customer: reviews earn
    for n in range(7):
        review = ActionPerformed(
            event_id=f"w-cat-review-{n}",
            member_id="cat",
            occurred_at=T0 + n * HOUR,
            action="review.published",
            sku=f"S{n}",
            rating=5,
        )
        await guarded(run, shop, review)
    reviews = await features_of(engine, shop, "cat", "action:review.published")
    assert [f["history"]["reviews_24h"] for f in reviews] == [1, 2, 3, 4, 5, 6, 7]
    async with db.connection(engine) as pg:
        rules = await pg.fetch(
            "SELECT decided_by FROM fraud_decisions WHERE merchant_id = $1 AND decision = 'hold'"
            " ORDER BY decided_at",
            shop,
        )
    assert [r["decided_by"] for r in rules] == ["review_velocity", "member_under_review"]


async def test_a_new_device_or_address_on_an_old_account(engine, run, shop):
    home = Address(line1="7 Elm Rd", postal_code="10115", city="Berlin")
    elsewhere = Address(line1="1 Oak Ave", postal_code="20095", city="Hamburg")
    await guarded(
        run, shop, order("dot", 1, T0, signals=Signals(device_id="d1", shipping_address=home))
    )
    later = T0 + 40 * DAY
    await guarded(
        run, shop, order("dot", 2, later, signals=Signals(device_id="d2", shipping_address=home))
    )
    await guarded(
        run,
        shop,
        order(
            "dot", 3, later + 2 * HOUR, signals=Signals(device_id="d1", shipping_address=elsewhere)
        ),
    )
    await guarded(run, shop, order("dot", 4, later + 2 * DAY, signals=Signals(device_id="d2")))
    # A young account's new device is not "new on an old account".
    await guarded(run, shop, order("eli", 1, T0, signals=Signals(device_id="e1")))
    await guarded(run, shop, order("eli", 2, T0 + 2 * DAY, signals=Signals(device_id="e2")))
    dots = await features_of(engine, shop, "dot", "earning:order")
    assert [(f["new_device_on_old_account"], f["new_address_on_old_account"]) for f in dots] == [
        (False, False),
        (True, False),
        (False, True),
        (False, False),  # d2 was first seen two days before
    ]
    elis = await features_of(engine, shop, "eli", "earning:order")
    assert [f["new_device_on_old_account"] for f in elis] == [False, False]


async def component_sizes(pg, merchant, members):
    return {
        m: links.component_members
        for m, links in (await load_member_links(pg, merchant, members)).items()
    }


async def test_components_join_through_hard_links_and_keep_their_sizes(engine, run, merchant):
    def link(kind, value, member, hours=0):
        return SeenLink(kind, value.encode(), member, T0 + hours * HOUR)

    await run(
        record_links, merchant, [link(LinkKind.CARD, "c1", "a"), link(LinkKind.CARD, "c1", "b")]
    )
    await run(
        record_links, merchant, [link(LinkKind.DEVICE, "d1", "c"), link(LinkKind.DEVICE, "d1", "d")]
    )
    await run(
        record_links,
        merchant,
        [link(LinkKind.EMAIL, "shared@x", "e"), link(LinkKind.EMAIL, "shared@x", "a")],
    )
    await run(
        record_links,
        merchant,
        [
            link(LinkKind.IP_PREFIX, "10.0.0.0/24", "f"),
            link(LinkKind.IP_PREFIX, "10.0.0.0/24", "a"),
        ],
    )
    sizes = await run(component_sizes, merchant, ["a", "b", "c", "d", "e", "f", "z"])
    assert sizes == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1, "f": 1, "z": 1}  # soft links: alone
    # An address joins the two pairs; a later member on c1 joins all four.
    await run(
        record_links,
        merchant,
        [link(LinkKind.ADDRESS, "home", "b", 1), link(LinkKind.ADDRESS, "home", "c", 1)],
    )
    await run(record_links, merchant, [link(LinkKind.CARD, "c1", "g", 2)])
    await run(record_links, merchant, [link(LinkKind.CARD, "c1", "g", 3)])  # seen again: no change
    sizes = await run(component_sizes, merchant, ["a", "b", "c", "d", "g"])
    assert set(sizes.values()) == {5}
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT component_id, members FROM fraud_components WHERE merchant_id = $1", merchant
        )
        labels = await pg.fetch(
            "SELECT DISTINCT component_id FROM fraud_member_components WHERE merchant_id = $1",
            merchant,
        )
    assert [r["members"] for r in rows] == [5]
    assert [r["component_id"] for r in labels] == [rows[0]["component_id"]]


async def test_members_first_seen_together_in_one_round_are_joined(run, merchant):
    """Three members new on one card in one round, one of them also new on a device with a
    member from before: one component of four."""
    t = T0
    await run(record_links, merchant, [SeenLink(LinkKind.DEVICE, b"dv", "old", t)])
    await run(
        record_links,
        merchant,
        [
            SeenLink(LinkKind.CARD, b"cc", "x", t),
            SeenLink(LinkKind.CARD, b"cc", "y", t),
            SeenLink(LinkKind.CARD, b"cc", "z", t),
            SeenLink(LinkKind.DEVICE, b"dv", "z", t),
        ],
    )
    sizes = await run(component_sizes, merchant, ["old", "x", "y", "z"])
    assert sizes == {"old": 4, "x": 4, "y": 4, "z": 4}


def test_the_larger_component_absorbs_the_smaller() -> None:
    known = {"a": ("a", 3), "b": ("a", 3), "c": ("c", 1)}
    merges = plan_merges([["b", "c"], ["c", "new"]], known)
    assert merges.absorbed == {"c": "a"}
    assert merges.joined == {"new": "a"}
    assert merges.sizes == {"a": 5}
    alone = plan_merges([["solo"]], {})
    assert (alone.absorbed, alone.joined, alone.sizes) == ({}, {"solo": "solo"}, {"solo": 1})
    same = plan_merges([["a", "b"]], known)
    assert (same.absorbed, same.joined, same.sizes) == ({}, {}, {})


def test_the_running_median_moves_a_bounded_step_per_round() -> None:
    assert median_steps(50.0, [10, 50, 60, 70]) == 1
    assert median_steps(50.0, [1000] * 100) == MAX_MEDIAN_STEPS_PER_ROUND
    assert median_steps(50.0, [1] * 100) == -MAX_MEDIAN_STEPS_PER_ROUND


def test_a_rounds_own_points_add_up_per_earner_in_time_order() -> None:
    rewards = [("ann", T0, 50), ("ann", T0, 200), ("bob", T0, 10), ("ann", T0 + HOUR, 500)]
    assert points_in_round(rewards) == {("ann", T0): 250, ("bob", T0): 10, ("ann", T0 + HOUR): 750}


def test_new_means_first_seen_within_a_day_on_an_account_over_30_days() -> None:
    at = T0 + 60 * DAY
    assert new_on_old_account(at - HOUR, at, 45.0)
    assert not new_on_old_account(at - 2 * DAY, at, 45.0)
    assert not new_on_old_account(at - HOUR, at, 10.0)
    assert not new_on_old_account(None, at, 45.0)


async def test_a_link_seen_again_is_rewritten_only_when_its_sightings_widen(engine, run, merchant):
    """`last_seen_at` moves by more than a day or not at all (a returning customer's links cost
    an index probe, not a new row version); an earlier sighting always moves `first_seen_at`."""

    async def sightings():
        async with db.connection(engine) as pg:
            row = await pg.fetchrow(
                "SELECT first_seen_at, last_seen_at, xmin::text::bigint AS version"
                " FROM fraud_identity_links WHERE merchant_id = $1",
                merchant,
            )
        return row["first_seen_at"], row["last_seen_at"], row["version"]

    async def see(at):
        await run(record_links, merchant, [SeenLink(LinkKind.CARD, b"cc", "ann", at)])

    await see(T0)
    first = await sightings()
    await see(T0 + 20 * HOUR)  # within a day of the last sighting: no rewrite
    assert await sightings() == first
    await see(T0 + 2 * DAY)
    assert (await sightings())[:2] == (T0, T0 + 2 * DAY)
    await see(T0 - HOUR)  # an older event, applied late
    assert (await sightings())[:2] == (T0 - HOUR, T0 + 2 * DAY)
