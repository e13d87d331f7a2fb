"""The guard's model in PostgreSQL: the stored decisions rebuild the model that made them, a
tampered snapshot is refused (and never unpickled), a snapshot from another schema or river is
rebuilt, a rolled-back round leaves no trace in any process's model, and intents a hard rule
held never reach the model (poisoning)."""

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.fraud import model_store
from pointguard.fraud.cases import ReviewAction, case_queue
from pointguard.fraud.guard import Guard
from pointguard.fraud.model import GuardModel
from pointguard.fraud.signals import Signals
from pointguard.program.apply import apply_events
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import OrderLine, OrderPaid
from pointguard.program.review import review_case

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
KEY = b"m" * 32

PROGRAM = """
name = "Modelled"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[guard]
model_warmup = 40
model_alert_percent = 5.0
max_members_per_card = 1
"""


async def _key() -> bytes:
    return KEY


def new_guard() -> Guard:
    """A guard with an empty model cache: what another worker process has."""
    return Guard(identity_key=lambda pg, merchant_id: _key())


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(days=9))
    return merchant


def orders(seed: int, count: int, *, start: int = 0, members: int = 25) -> list[OrderPaid]:
    """Honest-looking orders of a few members, a few hours apart, with varied baskets."""
    draw = random.Random(seed)
    made = []
    for n in range(start, start + count):
        member = f"c{draw.randrange(members)}"
        made.append(
            OrderPaid(
                event_id=f"w-{n:05d}",
                member_id=member,
                occurred_at=T0 + timedelta(hours=3 * n),
                order_id=f"o-{n}",
                currency="EUR",
                signals=Signals(device_id=f"dev-{member}", payment_fingerprint=f"card-{member}"),
                lines=[
                    OrderLine(
                        line_id="1",
                        sku="S",
                        category="c",
                        quantity=1,
                        unit_price_minor=int(draw.lognormvariate(8, 0.6)),
                    )
                ],
            )
        )
    return made


async def apply_in_rounds(engine, shop, guard, events, size=10):
    for at in range(0, len(events), size):
        await db.run_in_transaction(engine, apply_events, shop, events[at : at + size], guard=guard)


async def stored(engine, shop):
    async with db.connection(engine) as pg:
        row = await pg.fetchrow("SELECT seen, chain FROM fraud_models WHERE merchant_id = $1", shop)
        seqs = await pg.fetch(
            "SELECT learn_seq FROM fraud_decisions WHERE merchant_id = $1"
            " AND learn_seq IS NOT NULL ORDER BY learn_seq",
            shop,
        )
    return row["seen"], bytes(row["chain"]), [r["learn_seq"] for r in seqs]


async def model_of(engine, shop, guard) -> GuardModel:
    async with db.connection(engine) as pg, pg.transaction():
        return await guard.models.current(pg, shop, KEY)


def same_model(one: GuardModel, other: GuardModel) -> bool:
    probes = [{key: random.Random(n).random() * 3 for key in one.scaler.min} for n in range(5)]

    def state(model: GuardModel):
        return (
            (model.seen, model.learned, model.labels, model.abusive_labels, model.chain),
            model.scores.counts,
            [model.score(p) for p in probes],
            [model.classifier.predict_proba_one(p) for p in probes],
        )

    return state(one) == state(other)


async def test_every_intent_the_model_saw_has_its_place_and_another_process_rebuilds_it(
    engine, shop
):
    guard = new_guard()
    await apply_in_rounds(engine, shop, guard, orders(1, 80))
    seen, chain, seqs = await stored(engine, shop)
    assert seen == 80 and seqs == list(range(1, 81))
    rebuilt = await model_of(engine, shop, new_guard())
    assert rebuilt.chain == chain
    assert same_model(rebuilt, guard.models.models[shop])


async def test_a_process_behind_catches_up_by_replaying_what_it_missed(engine, shop):
    first, second = new_guard(), new_guard()
    events = orders(2, 90)
    await apply_in_rounds(engine, shop, first, events[:30])
    await apply_in_rounds(engine, shop, second, events[30:60])
    await apply_in_rounds(engine, shop, first, events[60:])
    assert first.models.rebuilds == 1  # its first round; afterwards it only caught up
    assert same_model(first.models.models[shop], await model_of(engine, shop, new_guard()))


async def test_a_rolled_back_round_leaves_no_trace_in_the_model(engine, shop):
    guard = new_guard()
    events = orders(3, 60)
    await apply_in_rounds(engine, shop, guard, events[:40])

    async def apply_then_fail(pg):
        await apply_events(pg, shop, events[40:50], guard=guard)
        raise RuntimeError("the round fails after the guard")

    with pytest.raises(RuntimeError):
        await db.run_in_transaction(engine, apply_then_fail)
    # Another process commits other intents meanwhile: the store has seen as many as the
    # first process's cache, but not the same ones.
    await apply_in_rounds(engine, shop, new_guard(), events[50:])
    await apply_in_rounds(engine, shop, guard, events[40:50])
    assert guard.models.rebuilds == 2
    seen, chain, _ = await stored(engine, shop)
    assert seen == 60
    assert guard.models.models[shop].chain == chain
    assert same_model(guard.models.models[shop], await model_of(engine, shop, new_guard()))


async def snapshot_row(engine, shop):
    async with db.connection(engine) as pg:
        return await pg.fetchrow(
            "SELECT snapshot, snapshot_seen, river_version, vector_schema_hash, signature"
            " FROM fraud_models WHERE merchant_id = $1",
            shop,
        )


@pytest.fixture
def snapshot_often(monkeypatch):
    monkeypatch.setattr(model_store, "SNAPSHOT_EVERY", 25)


@pytest.fixture
def unpickling_fails(monkeypatch):
    """From here on, unpickling a snapshot fails the test."""

    def refuse(_body):
        raise AssertionError("a snapshot was unpickled")

    monkeypatch.setattr(model_store.pickle, "loads", refuse)


async def test_a_signed_snapshot_is_used_and_bounds_the_replay(
    engine, shop, snapshot_often, monkeypatch
):
    guard = new_guard()
    await apply_in_rounds(engine, shop, guard, orders(4, 60))
    row = await snapshot_row(engine, shop)
    assert row["snapshot_seen"] == 50 and row["river_version"] == model_store.RIVER_VERSION
    unpickled, replayed = [], []
    loads, observe = model_store.pickle.loads, GuardModel.observe

    def counted_loads(body):
        unpickled.append(len(body))
        return loads(body)

    def counted_observe(model, key, *args, **kwargs):
        replayed.append(key)
        return observe(model, key, *args, **kwargs)

    monkeypatch.setattr(model_store.pickle, "loads", counted_loads)
    monkeypatch.setattr(GuardModel, "observe", counted_observe)
    rebuilt = await model_of(engine, shop, new_guard())
    assert len(unpickled) == 1 and len(replayed) == 10  # the snapshot, then 51..60
    assert same_model(rebuilt, guard.models.models[shop])


async def test_a_tampered_snapshot_is_refused_with_an_error_and_the_model_rebuilt(
    engine, shop, snapshot_often, unpickling_fails, caplog
):
    guard = new_guard()
    await apply_in_rounds(engine, shop, guard, orders(5, 60))
    async with db.connection(engine) as pg:
        await pg.execute(
            "UPDATE fraud_models SET snapshot = overlay(snapshot PLACING '\\x00'::bytea FROM 200)"
            " WHERE merchant_id = $1",
            shop,
        )
    with caplog.at_level(logging.INFO, logger="pointguard.fraud.model_store"):
        rebuilt = await model_of(engine, shop, new_guard())
    assert same_model(rebuilt, guard.models.models[shop])
    refusals = [r for r in caplog.records if "signature" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["ERROR"]
    assert refusals[0].merchant_id == shop


@pytest.mark.parametrize("column", ["vector_schema_hash", "river_version"])
async def test_a_snapshot_from_another_schema_or_river_is_rebuilt_never_unpickled(
    engine, shop, snapshot_often, unpickling_fails, column, caplog
):
    guard = new_guard()
    await apply_in_rounds(engine, shop, guard, orders(6, 60))
    row = await snapshot_row(engine, shop)
    other = {**dict(row), column: "another"}
    # Signed properly: the key is not the issue, the schema or the river version is.
    signature = model_store._sign(
        KEY,
        bytes(other["snapshot"]),
        other["river_version"],
        other["vector_schema_hash"],
        other["snapshot_seen"],
    )
    async with db.connection(engine) as pg:
        await pg.execute(
            f"UPDATE fraud_models SET {column} = 'another', signature = $2 WHERE merchant_id = $1",
            shop,
            signature,
        )
    with caplog.at_level(logging.INFO, logger="pointguard.fraud.model_store"):
        rebuilt = await model_of(engine, shop, new_guard())
    assert same_model(rebuilt, guard.models.models[shop])
    assert any("rebuilding" in r.getMessage() for r in caplog.records)


async def model_state(engine, shop):
    model = await model_of(engine, shop, new_guard())
    return model.seen, model.learned, model.chain, model.scores.threshold(0.05)


async def test_a_flood_of_held_unreviewed_intents_moves_neither_the_model_nor_its_threshold(
    engine, shop, run
):
    guard = new_guard()
    honest = 320  # past the trees' first window, before which they score every intent 0
    await apply_in_rounds(engine, shop, guard, orders(7, honest), size=40)
    before = await model_state(engine, shop)
    assert before[0] > 250 and before[3] > 0.01  # warm, with a threshold
    # A ring of new accounts paying with a known member's card: every order is held, by
    # `shared_card` and then `member_under_review`, with nobody reviewing.
    flood = [
        OrderPaid(
            event_id=f"w-flood-{n}",
            member_id=f"ring-{n % 8}",
            occurred_at=T0 + timedelta(hours=3 * honest + n),
            order_id=f"flood-{n}",
            currency="EUR",
            signals=Signals(payment_fingerprint="card-c0", device_id=f"ring-{n % 8}"),
            lines=[
                OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=99_000)
            ],
        )
        for n in range(60)
    ]
    await apply_in_rounds(engine, shop, guard, flood)
    async with db.connection(engine) as pg:
        held = await pg.fetch(
            "SELECT decided_by, learn_seq FROM fraud_decisions WHERE merchant_id = $1"
            " AND event_id LIKE 'w-flood-%' AND decision = 'hold'",
            shop,
        )
    assert len(held) == 60 and {r["learn_seq"] for r in held} == {None}
    assert {r["decided_by"] for r in held} == {"shared_card", "member_under_review"}
    assert await model_state(engine, shop) == before


async def test_reviewed_cases_teach_the_classifier_in_the_models_order(engine, shop, run):
    guard = new_guard()
    await apply_in_rounds(engine, shop, guard, orders(8, 120), size=40)
    ring = [
        OrderPaid(
            event_id=f"w-ring-{n}",
            member_id=f"ring-{n}",
            occurred_at=T0 + timedelta(hours=3 * 120 + n),
            order_id=f"ring-{n}",
            currency="EUR",
            signals=Signals(payment_fingerprint="card-c1"),
            lines=[OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=900)],
        )
        for n in range(4)
    ]
    await apply_in_rounds(engine, shop, guard, ring)
    async with db.connection(engine) as pg:
        cases = await case_queue(pg, shop)
    assert len(cases) >= 4
    for case in cases:
        action = ReviewAction.CONFIRM if case.member_id.startswith("ring-") else ReviewAction.CLEAR
        await run(
            review_case, shop, case.case_id, action, reviewer="r", now=T0 + timedelta(days=60)
        )
    before = guard.models.models[shop]
    labels_before, seen_before = before.labels, before.seen
    await apply_in_rounds(engine, shop, guard, orders(9, 10, start=500))
    model = guard.models.models[shop]
    assert model.abusive_labels >= 4 and model.labels > labels_before
    async with db.connection(engine) as pg:
        learned = await pg.fetch(
            "SELECT learn_seq FROM fraud_cases WHERE merchant_id = $1 AND case_id = ANY($2)",
            shop,
            [case.case_id for case in cases],
        )
    assert all(seen_before < row["learn_seq"] <= model.seen for row in learned)
    assert same_model(model, await model_of(engine, shop, new_guard()))
