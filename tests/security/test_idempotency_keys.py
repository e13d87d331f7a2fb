"""Issue 9, item 3: idempotency keys never collide, and a used key never takes another entry.

Keys were ids joined with `:`, so `challenge_bonus_key("c", "m", 1)` was
`challenge_bonus_key("c", "m:1", 0)`, and order `o1`'s bonus key was order `o1:promotion:x`'s
earn key; the ledger then returned the first entry for the second one, whatever it held. Keys
are now built from length-prefixed parts with their kind (`pointguard.ledger.keys`), and a
different entry under a used key is an `IdempotencyConflict`.
"""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointguard.errors import IdempotencyConflict
from pointguard.ledger import member_balances, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.keys import idempotency_key
from pointguard.program.apply import apply_event
from pointguard.program.challenges.rules import challenge_bonus_key
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid
from pointguard.program.orders.rules import order_bonus_key, order_earn_key
from pointguard.program.referrals.rules import referee_key, referrer_key

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
OLD_KINDS = ["order", "challenge", "referral", "action", "refund", "cancel", "release"]

# Ids as storefronts may send them: separators, digits and the key format's own characters.
IDS = st.text(alphabet=":/#1a", max_size=6)
KINDS = st.sampled_from(["order", "order-bonus", "challenge", "referee", "capture"])


def test_the_issues_challenge_keys_differ():
    assert challenge_bonus_key("c", "m", 1) != challenge_bonus_key("c", "m:1", 0)


def test_an_orders_bonus_key_is_no_other_orders_earn_key():
    assert order_bonus_key("o1", "promotion:x") != order_earn_key("o1:promotion:x")


@given(kind=KINDS, parts=st.lists(IDS, max_size=4), other=st.lists(IDS, max_size=4))
def test_different_parts_give_different_keys(kind, parts, other):
    """Against any other parts, and against the same text split at its separators."""
    resplit = ":".join(parts).split(":")
    for candidate in (other, resplit):
        same_key = idempotency_key(kind, *parts) == idempotency_key(kind, *candidate)
        assert same_key == (parts == candidate)


@given(
    a=st.tuples(st.sampled_from(OLD_KINDS), st.lists(IDS, min_size=1, max_size=3)),
    b=st.tuples(st.sampled_from(OLD_KINDS), st.lists(IDS, min_size=1, max_size=3)),
)
def test_new_keys_never_equal_old_format_keys(a, b):
    """Old keys were `kind:part:part`: no key made now is one of them."""
    assert idempotency_key(a[0], *a[1]) != ":".join([b[0], *b[1]])


@given(
    challenge=IDS,
    members=st.tuples(IDS, IDS),
    generations=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    order=IDS,
    source=IDS,
)
def test_every_builder_keeps_its_inputs_apart(challenge, members, generations, order, source):
    """Each builder is one-to-one, and no two builders (or kinds) share a key."""
    (m1, m2), (g1, g2) = members, generations
    same = (m1, g1) == (m2, g2)
    assert (
        challenge_bonus_key(challenge, m1, g1) == challenge_bonus_key(challenge, m2, g2)
    ) == same
    keys = [
        order_earn_key(order),
        order_earn_key(f"{order}:{source}"),
        order_bonus_key(order, source),
        referee_key(m1),
        referrer_key(m1),
        challenge_bonus_key(challenge, m1, g1),
    ]
    assert len(set(keys)) == len(keys)


def test_a_long_key_is_hashed_within_the_ledgers_limit():
    long_id = "x:" * 300
    key = idempotency_key("order", long_id)
    assert len(key) <= 255 and key.startswith("order/#")
    assert key != idempotency_key("order", long_id + "x")


# --- the ledger: a used key returns its entry only to the same entry ----------------------


async def earn(run, merchant, member, points, key="k"):
    return await run(
        ops.earn, merchant, member, points, key=key, description=f"{points} points", source="t"
    )


async def test_the_same_entry_again_replays_it(run, merchant):
    first = await earn(run, merchant, "ann", 10)
    again = await run(
        ops.earn, merchant, "ann", 10, key="k", description="other words", source="retry"
    )
    assert again.replayed and again.entry_id == first.entry_id


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(("bob", 10), id="another-member"),
        pytest.param(("ann", 11), id="another-amount"),
    ],
)
async def test_another_earn_under_a_used_key_is_a_conflict(run, merchant, other):
    await earn(run, merchant, "ann", 10)
    with pytest.raises(IdempotencyConflict) as info:
        await earn(run, merchant, *other)
    assert info.value.idempotency_key == "k"
    assert (await run(member_balances, merchant, "ann")).available_points == 10
    assert (await run(member_balances, merchant, "bob")).available_points == 0


async def test_another_kind_under_a_used_key_is_a_conflict(run, merchant):
    await earn(run, merchant, "ann", 10, key="seed")
    await earn(run, merchant, "ann", 5)
    with pytest.raises(IdempotencyConflict):
        await run(
            ops.reserve,
            merchant,
            "ann",
            5,
            key="k",
            description="checkout",
            source="t",
            now=NOW,
            timeout_s=60,
        )
    balances = await run(member_balances, merchant, "ann")
    assert (balances.available_points, balances.reserved_points) == (15, 0)


async def test_a_conflict_in_a_batch_leaves_nothing_of_it(run, merchant):
    await earn(run, merchant, "ann", 10)
    batch = [
        ops.earn_entry(merchant, "bob", 50, key="fresh", description="50 points", source="t"),
        ops.earn_entry(merchant, "cat", 10, key="k", description="10 points", source="t"),
    ]
    with pytest.raises(IdempotencyConflict):
        await run(post_entries, batch)
    assert (await run(member_balances, merchant, "bob")).available_points == 0
    replayed = await run(post_entries, batch[:1])
    assert not replayed[0].replayed


# --- end to end: an order id that spells another order's bonus key ---------------------------

PROGRAM = """
name = "Keys"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[[promotions]]
id = "dec"
name = "December bonus"
starts_at = 2026-12-01T00:00:00Z
ends_at = 2027-01-01T00:00:00Z
bonus_points = 50
"""


async def test_an_order_id_spelling_another_orders_bonus_earns_its_own_points(run, merchant):
    await run(
        save_program, merchant, parse_program(PROGRAM), effective_from=NOW - timedelta(days=30)
    )
    line = OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=10_000)

    def paid(event_id, member, order_id):
        return OrderPaid(
            event_id=event_id,
            member_id=member,
            occurred_at=NOW,
            order_id=order_id,
            currency="EUR",
            lines=[line],
        )

    await run(apply_event, merchant, paid("e1", "ann", "o1"))
    bob = await run(apply_event, merchant, paid("e2", "bob", "o1:promotion:dec"))
    assert not any(e.replayed for e in bob.entries)
    assert (await run(member_balances, merchant, "bob")).pending_points == 100 + 50
