"""`apply_events` (the set-wise path the workers use) does exactly what applying the same
events one at a time does: the same entries, balances and tiers, for any mix of members,
orders, refunds, actions and repeats, and any batch size."""

import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointguard import db
from pointguard.errors import UnknownOrder
from pointguard.program.apply import apply_event, apply_events
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
)
from pointguard.program.orders.rules import order_earn_key

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "program.toml"
MEMBERS = ["ann", "bob", "cat"]
CATEGORIES = ["shoes", "outlet", "gift_card", "socks"]
ACTIONS = ["signup", "review.published", "social.shared"]


def program_without_chance():
    """The example program, every feature but the chance games (their draws are random)."""
    document = tomllib.loads(EXAMPLE.read_text())
    document.pop("chance", None)
    return parse_program(document)


@st.composite
def histories(draw):
    """A plausible history: refunds only of orders paid before, some webhooks delivered twice."""
    events: list[Event] = []
    paid: dict[str, list[OrderPaid]] = {m: [] for m in MEMBERS}
    at = T0
    for n in range(draw(st.integers(1, 30))):
        at += timedelta(hours=draw(st.integers(0, 30)))
        member = draw(st.sampled_from(MEMBERS))
        kind = draw(
            st.sampled_from(["paid", "paid", "paid", "refund", "cancel", "action", "again"])
        )
        if kind == "again" and events:
            events.append(draw(st.sampled_from(events)))
        elif kind in ("refund", "cancel") and paid[member]:
            order = draw(st.sampled_from(paid[member]))
            if kind == "cancel":
                events.append(
                    OrderCancelled(
                        event_id=f"e{n}", member_id=member, occurred_at=at, order_id=order.order_id
                    )
                )
            else:
                line = draw(st.sampled_from(order.lines))
                events.append(
                    OrderRefunded(
                        event_id=f"e{n}",
                        member_id=member,
                        occurred_at=at,
                        order_id=order.order_id,
                        lines=[RefundedLine(line_id=line.line_id, quantity=1)],
                    )
                )
        elif kind == "action":
            events.append(
                ActionPerformed(
                    event_id=f"e{n}",
                    member_id=member,
                    occurred_at=at,
                    action=draw(st.sampled_from(ACTIONS)),
                )
            )
        else:
            lines = [
                OrderLine(
                    line_id=str(i),
                    sku=f"SKU-{i}",
                    category=draw(st.sampled_from(CATEGORIES)),
                    quantity=draw(st.integers(1, 3)),
                    unit_price_minor=draw(st.integers(0, 300_000)),
                )
                for i in range(draw(st.integers(1, 3)))
            ]
            order = OrderPaid(
                event_id=f"e{n}",
                member_id=member,
                occurred_at=at,
                order_id=f"o{n}",
                currency="EUR",
                lines=lines,
            )
            paid[member].append(order)
            events.append(order)
    return events


async def outcome(engine, merchant):
    """What the events did, in terms free of the merchant's id and of entry ids."""
    async with db.connection(engine) as pg:
        entries = await pg.fetch(
            """
            SELECT e.idempotency_key, e.kind, e.description,
                   coalesce(a.member_id || ':' || a.kind, p.account_id::text) AS account,
                   p.amount_points
            FROM ledger_entries e
            JOIN ledger_postings p USING (merchant_id, entry_id)
            LEFT JOIN ledger_accounts a
                ON a.merchant_id = p.merchant_id AND a.account_id = p.account_id
            WHERE e.merchant_id = $1
            """,
            merchant,
        )
        members = await pg.fetch(
            """SELECT member_id, tier, categories_bought, promotion_points::text AS promotions
            FROM program_members WHERE merchant_id = $1""",
            merchant,
        )
        balances = await pg.fetch(
            "SELECT member_id, kind, balance_points FROM ledger_accounts WHERE merchant_id = $1",
            merchant,
        )
    return [sorted(tuple(r) for r in rows) for rows in (entries, members, balances)]


async def new_merchant(run):
    merchant = f"batch-{uuid.uuid4().hex[:12]}"
    await run(
        save_program, merchant, program_without_chance(), effective_from=T0 - timedelta(days=400)
    )
    return merchant


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=histories(), batch_size=st.integers(1, 12))
async def test_set_wise_equals_one_at_a_time(engine, run, events, batch_size):
    one_by_one, set_wise = await new_merchant(run), await new_merchant(run)
    for event in events:
        await run(apply_event, one_by_one, event)
    for start in range(0, len(events), batch_size):
        await run(apply_events, set_wise, events[start : start + batch_size])
    assert await outcome(engine, set_wise) == await outcome(engine, one_by_one)


async def test_results_come_back_in_the_order_given(run):
    merchant = await new_merchant(run)
    line = OrderLine(line_id="1", sku="S", category="socks", quantity=1, unit_price_minor=10_000)
    events = [
        OrderPaid(
            event_id=f"e{n}",
            member_id=member,
            occurred_at=T0,
            order_id=f"o{n}",
            currency="EUR",
            lines=[line],
        )
        for n, member in enumerate(["bob", "ann", "bob", "ann", "cat"])
    ]
    applied = await run(apply_events, merchant, [*events, events[0]])
    assert [a.event_id for a in applied] == ["e0", "e1", "e2", "e3", "e4", "e0"]
    assert [a.already_applied for a in applied] == [False] * 5 + [True]
    assert [a.entries[0].idempotency_key for a in applied[:5]] == [
        order_earn_key(f"o{n}") for n in range(5)
    ]


async def test_one_bad_event_undoes_the_whole_batch(engine, run):
    merchant = await new_merchant(run)
    line = OrderLine(line_id="1", sku="S", category="socks", quantity=1, unit_price_minor=10_000)
    good = OrderPaid(
        event_id="e1", member_id="ann", occurred_at=T0, order_id="o1", currency="EUR", lines=[line]
    )
    bad = OrderCancelled(event_id="e2", member_id="bob", occurred_at=T0, order_id="nope")
    before = await outcome(engine, merchant)
    try:
        await run(apply_events, merchant, [good, bad])
    except UnknownOrder:
        pass
    else:
        raise AssertionError("a cancellation of an unknown order must be refused")
    assert await outcome(engine, merchant) == before
