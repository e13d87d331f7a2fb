"""The guard in the program's pipeline, on the database: held earns stay pending whatever the
return window says, a reviewer's clear releases them and a confirm forfeits them, a member
under review cannot spend, and two reviewers cannot both decide one case."""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pointguard import db
from pointguard.config import load_settings
from pointguard.errors import CaseAlreadyDecided, MemberUnderReview
from pointguard.fraud.cases import ReviewAction, case_detail, case_queue, load_open_cases
from pointguard.fraud.guard import Guard
from pointguard.fraud.signals import Address, Signals
from pointguard.ledger import AccountKind, member_balances, system_balances
from pointguard.ledger import operations as ops
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import ActionPerformed, OrderCancelled, OrderLine, OrderPaid
from pointguard.program.referrals.records import referral_code
from pointguard.program.review import review_case
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import redeem
from pointguard.upkeep import upkeep_pass

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY = timedelta(days=1)
AFTER_RETURN_WINDOW = T0 + 20 * DAY

PROGRAM = """
name = "Guarded"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[referrals]
referee_points = 200
referrer_points = 500
min_first_order_minor = 3000
[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 50
amount_minor = 500
"""

GUARD = Guard(identity_key=lambda pg, merchant_id: _fixed_key())


async def _fixed_key() -> bytes:
    return b"k" * 32


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - 100 * DAY)
    return merchant


def order(member, n, at, *, signals=None, code=None, amount_minor=5000):
    return OrderPaid(
        event_id=f"w-{member}-{n}",
        member_id=member,
        occurred_at=at,
        order_id=f"{member}-{n}",
        currency="EUR",
        referral_code=code,
        signals=signals,
        lines=[
            OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=amount_minor)
        ],
    )


def signup(member, at, code, signals=None):
    return ActionPerformed(
        event_id=f"w-{member}-signup",
        member_id=member,
        occurred_at=at,
        action="signup",
        referral_code=code,
        signals=signals,
    )


async def guarded(run, shop, event):
    return await run(apply_event, shop, event, guard=GUARD)


async def decisions(engine, shop):
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT member_id, source, decision, decided_by, reasons::text AS reasons"
            " FROM fraud_decisions WHERE merchant_id = $1 ORDER BY decided_at, intent_key",
            shop,
        )
    return [tuple(r.values()) for r in rows]


async def pending(run, shop, member):
    return (await run(member_balances, shop, member)).pending_points


async def available_of(run, shop, member):
    return (await run(member_balances, shop, member)).available_points


async def test_self_referral_through_a_shared_card_is_held_until_reviewed(
    engine, run, shop, outbox, assert_ledger_intact
):
    card = Signals(payment_fingerprint="card-A", ip="203.0.113.5")
    await guarded(run, shop, order("ann", 1, T0, signals=card))
    code = await run(referral_code, shop, "ann")
    await guarded(run, shop, signup("bob", T0 + DAY, code, Signals(ip="203.0.113.9")))
    await guarded(run, shop, order("bob", 1, T0 + 2 * DAY, signals=card))

    held = [d for d in await decisions(engine, shop) if d[2] == "hold"]
    assert {(member, source, rule) for member, source, _, rule, _ in held} == {
        ("ann", "referral:referrer", "self_referral"),
        ("bob", "referral:referee", "self_referral"),
    }
    assert all("share a payment card" in reasons for *_, reasons in held)
    assert sorted(p["member_id"] for p in await outbox("member.flagged")) == ["ann", "bob"]

    # The return window passes: the orders' own points are released, the held ones are not.
    await run(ops.release_due, shop, now=AFTER_RETURN_WINDOW)
    assert await available_of(run, shop, "ann") == 50
    assert await pending(run, shop, "ann") == 500
    assert (await available_of(run, shop, "bob"), await pending(run, shop, "bob")) == (50, 200)

    # A held member cannot spend: the checkout is refused and nothing is reserved.
    with pytest.raises(MemberUnderReview):
        await run(
            redeem,
            shop,
            "bob",
            "five-off",
            Cart(subtotal_minor=10_000),
            key="k1",
            now=AFTER_RETURN_WINDOW,
        )

    cases = {c.member_id: c for c in await run(case_queue, shop)}
    detail = await run(case_detail, shop, cases["bob"].case_id)
    assert [(h.source, h.points, h.decided_by) for h in detail.held] == [
        ("referral:referee", 200, "self_referral")
    ]
    assert detail.held[0].reasons == ["the referrer and the referee share a payment card"]
    assert detail.held[0].features["referral_shared"] == ["card", "ip_prefix"]
    assert detail.held[0].features["component_members"] == 2  # ann and bob, by the card
    assert [(m.member_id, m.shared, m.open_case_id) for m in detail.linked] == [
        ("ann", ("card", "ip_prefix"), cases["ann"].case_id)
    ]
    cleared = await run(
        review_case,
        shop,
        cases["bob"].case_id,
        ReviewAction.CLEAR,
        reviewer="rita",
        now=AFTER_RETURN_WINDOW,
    )
    assert cleared.case.status == "cleared" and cleared.case.decided_by == "rita"
    assert (await available_of(run, shop, "bob"), await pending(run, shop, "bob")) == (250, 0)
    assert [p["member_id"] for p in await outbox("member.cleared")] == ["bob"]

    confirmed = await run(
        review_case,
        shop,
        cases["ann"].case_id,
        ReviewAction.CONFIRM,
        reviewer="rita",
        note="one card, two accounts",
        freeze=True,
        now=AFTER_RETURN_WINDOW,
    )
    assert [e.kind.value for e in confirmed.entries] == ["forfeit"]
    assert (await available_of(run, shop, "ann"), await pending(run, shop, "ann")) == (50, 0)
    assert (await run(system_balances, shop))[AccountKind.FORFEITED] == 500
    assert [p["member_id"] for p in await outbox("member.frozen")] == ["ann"]
    with pytest.raises(MemberUnderReview):  # frozen
        await run(
            redeem,
            shop,
            "ann",
            "five-off",
            Cart(subtotal_minor=10_000),
            key="k2",
            now=AFTER_RETURN_WINDOW,
        )
    await assert_ledger_intact()


async def test_a_household_sharing_a_network_and_an_address_is_not_held(
    engine, run, shop, assert_ledger_intact
):
    home = Address(line1="7 Elm Rd", postal_code="10115", city="Berlin")
    await guarded(
        run,
        shop,
        order(
            "carl",
            1,
            T0,
            signals=Signals(payment_fingerprint="card-C", ip="198.51.100.4", shipping_address=home),
        ),
    )
    code = await run(referral_code, shop, "carl")
    await guarded(run, shop, signup("dana", T0 + DAY, code))
    await guarded(
        run,
        shop,
        order(
            "dana",
            1,
            T0 + 2 * DAY,
            signals=Signals(
                payment_fingerprint="card-D", ip="198.51.100.77", shipping_address=home
            ),
        ),
    )
    assert {d[2] for d in await decisions(engine, shop)} == {"clear"}
    assert await run(case_queue, shop) == []
    await run(ops.release_due, shop, now=AFTER_RETURN_WINDOW)
    assert await available_of(run, shop, "carl") == 50 + 500
    assert await available_of(run, shop, "dana") == 50 + 200
    await assert_ledger_intact()


async def test_a_member_under_review_has_every_new_earn_held(engine, run, shop):
    card = Signals(payment_fingerprint="card-E")
    await guarded(run, shop, order("eve", 1, T0, signals=card))
    code = await run(referral_code, shop, "eve")
    await guarded(run, shop, signup("fay", T0 + DAY, code))
    await guarded(run, shop, order("fay", 1, T0 + 2 * DAY, signals=card))
    await guarded(run, shop, order("fay", 2, T0 + 3 * DAY))  # no signals at all
    later = [d for d in await decisions(engine, shop) if d[0] == "fay" and d[1] == "earning:order"]
    assert [(d[2], d[3]) for d in later] == [("clear", "rules"), ("hold", "member_under_review")]
    assert len(await run(case_queue, shop)) == 2  # eve's and fay's; fay's second hold joined hers
    await run(ops.release_due, shop, now=AFTER_RETURN_WINDOW)
    assert await pending(run, shop, "fay") == 200 + 50  # the welcome and the second order


async def test_two_reviewers_deciding_one_case_at_once_one_wins(engine, run, shop):
    card = Signals(payment_fingerprint="card-G")
    await guarded(run, shop, order("gus", 1, T0, signals=card))
    code = await run(referral_code, shop, "gus")
    await guarded(run, shop, order("hal", 1, T0 + DAY, signals=card, code=code))
    case_id = (await run(load_open_cases, shop, ["hal"]))["hal"]

    async def decide(action, reviewer):
        return await db.run_in_transaction(
            engine, review_case, shop, case_id, action, reviewer=reviewer, now=AFTER_RETURN_WINDOW
        )

    outcomes = await asyncio.gather(
        decide(ReviewAction.CLEAR, "rita"),
        decide(ReviewAction.CONFIRM, "sam"),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], CaseAlreadyDecided), outcomes
    winner = next(o for o in outcomes if not isinstance(o, BaseException))
    assert errors[0].status == winner.case.status
    balances = await run(member_balances, shop, "hal")
    if winner.case.status == "cleared":
        assert balances.pending_points == 50  # the order's own points, not yet due
    else:
        assert (
            balances.pending_points == 50
            and (await run(system_balances, shop))[AccountKind.FORFEITED] == 200
        )


async def test_confirming_a_referrer_voids_what_their_referrals_earned(
    engine, run, shop, assert_ledger_intact
):
    await guarded(run, shop, order("ann", 1, T0, signals=Signals(payment_fingerprint="card-ann")))
    code = await run(referral_code, shop, "ann")
    for n, friend in enumerate(["bob", "cat"]):  # nothing shared: rewarded and cleared
        await guarded(run, shop, order(friend, 1, T0 + (n + 1) * DAY, code=code))
    await run(ops.release_due, shop, now=AFTER_RETURN_WINDOW)  # bob's reward is released
    assert await available_of(run, shop, "ann") == 50 + 500 + 500
    later = AFTER_RETURN_WINDOW + DAY
    await guarded(
        run,
        shop,
        order("dan", 1, later, code=code, signals=Signals(payment_fingerprint="card-ann")),
    )
    assert await pending(run, shop, "ann") == 500  # dan's referral: held
    case_id = (await run(load_open_cases, shop, ["ann"]))["ann"]

    reviewed = await run(
        review_case,
        shop,
        case_id,
        ReviewAction.CONFIRM,
        reviewer="rita",
        void_referrals=True,
        now=later,
    )
    # dan's held reward forfeited; bob's and cat's released rewards taken back, once each.
    assert sorted(e.kind.value for e in reviewed.entries) == ["clawback", "clawback", "forfeit"]
    assert (await available_of(run, shop, "ann"), await pending(run, shop, "ann")) == (50, 0)
    async with db.connection(engine) as pg:
        statuses = await pg.fetch(
            "SELECT referee_id, status FROM program_referrals WHERE merchant_id = $1 ORDER BY 1",
            shop,
        )
    assert [tuple(r.values()) for r in statuses] == [
        ("bob", "reversed"),
        ("cat", "reversed"),
        ("dan", "reversed"),
    ]
    await assert_ledger_intact()


async def test_velocity_and_refund_farming_are_read_from_the_members_history(engine, run, shop):
    """The rules' inputs come from the database: six orders in an hour hold the sixth; a third
    order after two cancelled ones within the return window is held, and so, the case being
    open, is the next."""
    await guarded(run, shop, order("ivy", 99, T0 - 30 * DAY))  # no new account's burst
    for n in range(6):
        await guarded(run, shop, order("ivy", n, T0 + n * timedelta(minutes=5)))
    for n in range(3):
        await guarded(run, shop, order("joe", n, T0 + n * DAY))
        await guarded(
            run,
            shop,
            OrderCancelled(
                event_id=f"w-joe-{n}-cancel",
                member_id="joe",
                occurred_at=T0 + n * DAY + timedelta(hours=1),
                order_id=f"joe-{n}",
            ),
        )
    await guarded(run, shop, order("joe", 9, T0 + 4 * DAY))
    held = [(d[0], d[3]) for d in await decisions(engine, shop) if d[2] == "hold"]
    assert held == [
        ("ivy", "order_velocity"),
        ("joe", "refund_farming"),
        ("joe", "member_under_review"),
    ]


async def test_the_upkeep_never_releases_a_held_earn_however_late(engine, run, shop):
    """The server's own upkeep, a year on: what the guard held stays pending, the rest is
    released, and the ledger verifies."""
    card = Signals(payment_fingerprint="card-K")
    await guarded(run, shop, order("kim", 1, T0, signals=card))
    code = await run(referral_code, shop, "kim")
    await guarded(run, shop, order("lou", 1, T0 + DAY, signals=card, code=code))
    a_year_on = T0 + 365 * DAY
    await upkeep_pass(engine, a_year_on, settings=load_settings({}), merchant_id=shop)
    assert (await available_of(run, shop, "kim"), await pending(run, shop, "kim")) == (50, 500)
    assert (await available_of(run, shop, "lou"), await pending(run, shop, "lou")) == (50, 200)


@pytest.mark.parametrize(
    ("email", "held"),
    [("bob.77@mailinator.com", True), ("bob.77@example.org", False)],
)
async def test_a_referee_on_a_throwaway_inbox_holds_the_referral_rewards(
    engine, run, shop, email, held
):
    await guarded(run, shop, order("ann", 1, T0, signals=Signals(payment_fingerprint="card-A")))
    code = await run(referral_code, shop, "ann")
    await guarded(run, shop, signup("bob", T0 + DAY, code, Signals(email=email)))
    await guarded(
        run, shop, order("bob", 1, T0 + 2 * DAY, signals=Signals(payment_fingerprint="card-B"))
    )
    referral = {
        (member, source): (decision, rule)
        for member, source, decision, rule, _ in await decisions(engine, shop)
        if source.startswith("referral:")
    }
    expected = ("hold", "disposable_referral") if held else ("clear", "rules")
    assert referral == {
        ("ann", "referral:referrer"): expected,
        ("bob", "referral:referee"): expected,
    }


async def test_a_confirmed_case_forfeits_what_the_members_cleared_earns_still_have_pending(
    engine, run, shop, assert_ledger_intact
):
    """Before the return window ends: the order's own points, cleared by the guard but still
    pending, go to `forfeited` with the held referral reward; after it, released points stay."""
    card = Signals(payment_fingerprint="card-F")
    await guarded(run, shop, order("fay", 1, T0, signals=card))
    code = await run(referral_code, shop, "fay")
    await guarded(run, shop, signup("gus", T0 + DAY, code))
    await guarded(run, shop, order("gus", 1, T0 + 2 * DAY, signals=card))
    async with db.connection(engine) as pg:
        cases = {c.member_id: c for c in await case_queue(pg, shop)}
    confirmed = await run(
        review_case,
        shop,
        cases["fay"].case_id,
        ReviewAction.CONFIRM,
        reviewer="rita",
        now=T0 + 3 * DAY,
    )
    assert sorted(e.kind.value for e in confirmed.entries) == ["forfeit", "forfeit"]
    assert (await available_of(run, shop, "fay"), await pending(run, shop, "fay")) == (0, 0)
    assert (await run(system_balances, shop))[AccountKind.FORFEITED] == 500 + 50
    await assert_ledger_intact()


async def test_a_round_of_a_paid_order_seen_again_under_another_webhook_id_is_applied(
    engine, run, shop
):
    """The round has nothing new for the guard to screen: it applies, deciding nothing more."""
    first = order("ivo", 1, T0)
    await guarded(run, shop, first)
    again = msgspec.structs.replace(first, event_id="w-ivo-1-resent")
    applied = await guarded(run, shop, again)
    assert applied.event_id == "w-ivo-1-resent" and not applied.entries
    assert [(d[0], d[2]) for d in await decisions(engine, shop)] == [("ivo", "clear")]
