"""Each merchant's model in PostgreSQL, coherent across any number of worker processes.

The design (docs/fraud.md, "One model, many workers"):
- **One batch at a time per merchant.** The `fraud_models` row is the merchant's model lock.
  A worker takes it (`claim_model`, skipping a merchant whose lock another worker holds)
  before it claims the merchant's inbox rows, so the order rows are claimed in is the order
  the model sees them; `lock_model` takes it in every round whoever applies it (the backtest,
  a CLI), so two rounds never score and learn at once.
- **The database is the truth, a process's model a cache.** Every intent the model sees gets
  the next `learn_seq`, stored on its decision with its features in the round's transaction;
  the row keeps `seen` and `chain` (`model.py`). A process whose cached model is behind
  replays the decisions it missed; one whose cache does not match (another process learned
  meanwhile, or its own round was rolled back) starts from the newest snapshot and replays
  from there. A killed worker loses no learning: what it committed is in the decisions.
- **Snapshots** every `SNAPSHOT_EVERY` intents bound that replay: the pickled model, signed
  with an HMAC under a key derived from the merchant's identity key (sealed in the keyring,
  so the database alone cannot forge one) over the bytes, the river version, the vector
  schema's hash and the count. One whose signature fails is refused with a logged error; one
  made under another river version or schema is never unpickled. Either way the model is
  rebuilt from every stored decision.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from typing import Any

import msgspec

from pointguard.db import PgConnection
from pointguard.fraud.features import IntentFeatures
from pointguard.fraud.model import GuardModel
from pointguard.fraud.vector import VECTOR_SCHEMA_HASH, feature_vector

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 5_000
REPLAY_BATCH = 2_000
RIVER_VERSION = version("river")
SNAPSHOT_KEY_LABEL = b"pointguard fraud model snapshot v1"

INSERT_MODEL_ROW = """
INSERT INTO fraud_models (merchant_id) VALUES ($1) ON CONFLICT (merchant_id) DO NOTHING
"""

LOCK_MODEL_ROW = "SELECT seen, chain FROM fraud_models WHERE merchant_id = $1 FOR UPDATE"

TRY_LOCK_MODEL_ROW = """
SELECT seen FROM fraud_models WHERE merchant_id = $1 FOR UPDATE SKIP LOCKED
"""

SELECT_MODEL_SNAPSHOT = """
SELECT snapshot, snapshot_seen, river_version, vector_schema_hash, signature
FROM fraud_models WHERE merchant_id = $1
"""

UPDATE_MODEL_PROGRESS = "UPDATE fraud_models SET seen = $2, chain = $3 WHERE merchant_id = $1"

UPDATE_MODEL_SNAPSHOT = """
UPDATE fraud_models SET snapshot = $2, snapshot_seen = $3, river_version = $4,
    vector_schema_hash = $5, signature = $6, snapshot_at = $7
WHERE merchant_id = $1
"""

SELECT_SEEN_DECISIONS = """
SELECT learn_seq, intent_key, decision = 'clear' AS cleared, features::text AS features
FROM fraud_decisions
WHERE merchant_id = $1 AND learn_seq > $2 AND learn_seq <= $3
ORDER BY learn_seq
"""

SELECT_CASES_TO_LEARN = """
SELECT case_id, status = 'confirmed' AS abusive FROM fraud_cases
WHERE merchant_id = $1 AND learn_seq IS NULL AND status IN ('cleared', 'confirmed')
ORDER BY decided_at, case_id
LIMIT $2
"""

SELECT_LEARNED_CASES = """
SELECT learn_seq, case_id, status = 'confirmed' AS abusive FROM fraud_cases
WHERE merchant_id = $1 AND learn_seq > $2 AND learn_seq <= $3
"""

SELECT_CASES_HELD_FEATURES = """
SELECT case_id, features::text AS features FROM fraud_decisions
WHERE merchant_id = $1 AND case_id = ANY($2::bigint[]) AND decision = 'hold'
ORDER BY case_id, intent_key
"""

SET_CASES_LEARN_SEQ = """
UPDATE fraud_cases c SET learn_seq = l.learn_seq
FROM unnest($2::bigint[], $3::bigint[]) AS l(case_id, learn_seq)
WHERE c.merchant_id = $1 AND c.case_id = l.case_id
"""

CASES_PER_ROUND = 100


class ModelRow(msgspec.Struct, frozen=True):
    seen: int
    chain: bytes


@dataclass
class ModelCache:
    """A process's models, one per merchant (see the module)."""

    models: dict[str, GuardModel] = field(default_factory=dict)
    rebuilds: int = 0  # how often a model was rebuilt from a snapshot or from nothing

    async def current(self, pg: PgConnection, merchant_id: str, key: bytes) -> GuardModel:
        """The merchant's model as the database says it stands, with its lock held until the
        transaction ends."""
        row = await lock_model(pg, merchant_id)
        model = self.models.get(merchant_id)
        if model is not None and model.seen <= row.seen:
            if model.seen < row.seen:
                await _replay(pg, merchant_id, model, row.seen)
            if model.chain == row.chain:
                return model
        self.rebuilds += 1
        model = await _rebuild(pg, merchant_id, key, row)
        self.models[merchant_id] = model
        return model


async def claim_model(pg: PgConnection, merchant_id: str) -> bool:
    """Take the merchant's model lock for this transaction, unless another holds it. One
    statement a round; the row is created the first time (inserting never waits for a lock
    another transaction holds on an existing row)."""
    if await pg.fetchrow(TRY_LOCK_MODEL_ROW, merchant_id) is not None:
        return True
    await pg.execute(INSERT_MODEL_ROW, merchant_id)
    return await pg.fetchrow(TRY_LOCK_MODEL_ROW, merchant_id) is not None


async def lock_model(pg: PgConnection, merchant_id: str) -> ModelRow:
    """Wait for the merchant's model lock; where the stored model stands. One statement a
    round, once the row exists."""
    row = await pg.fetchrow(LOCK_MODEL_ROW, merchant_id)
    if row is None:
        await pg.execute(INSERT_MODEL_ROW, merchant_id)
        row = await pg.fetchrow(LOCK_MODEL_ROW, merchant_id)
    return ModelRow(row["seen"], bytes(row["chain"]))


async def save_model(
    pg: PgConnection,
    merchant_id: str,
    key: bytes,
    model: GuardModel,
    seen_before: int,
    now: datetime,
) -> None:
    """Record how far the model got in a round that started at `seen_before`, and snapshot it
    when the round crossed a multiple of `SNAPSHOT_EVERY`."""
    if model.seen == seen_before:
        return
    await pg.execute(UPDATE_MODEL_PROGRESS, merchant_id, model.seen, model.chain)
    if model.seen // SNAPSHOT_EVERY > seen_before // SNAPSHOT_EVERY:
        await write_snapshot(pg, merchant_id, key, model, now)


async def write_snapshot(
    pg: PgConnection, merchant_id: str, key: bytes, model: GuardModel, now: datetime
) -> None:
    body = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    signature = _sign(key, body, RIVER_VERSION, VECTOR_SCHEMA_HASH, model.seen)
    await pg.execute(
        UPDATE_MODEL_SNAPSHOT,
        merchant_id,
        body,
        model.seen,
        RIVER_VERSION,
        VECTOR_SCHEMA_HASH,
        signature,
        now,
    )


def _snapshot_key(key: bytes) -> bytes:
    return hmac.new(key, SNAPSHOT_KEY_LABEL, hashlib.sha256).digest()


def _sign(key: bytes, body: bytes, river_version: str, schema_hash: str, seen: int) -> bytes:
    signed = msgspec.msgpack.encode([river_version, schema_hash, seen, body])
    return hmac.new(_snapshot_key(key), signed, hashlib.sha256).digest()


async def _rebuild(pg: PgConnection, merchant_id: str, key: bytes, row: ModelRow) -> GuardModel:
    """From the newest usable snapshot, or from nothing, replayed up to `row`."""
    model = await _load_snapshot(pg, merchant_id, key, row.seen) or GuardModel()
    await _replay(pg, merchant_id, model, row.seen)
    if model.chain != row.chain and model.seen:
        log.error(
            "fraud model snapshot does not lead to the stored decisions: rebuilt from nothing",
            extra={"merchant_id": merchant_id},
        )
        model = GuardModel()
        await _replay(pg, merchant_id, model, row.seen)
    return model


async def _load_snapshot(
    pg: PgConnection, merchant_id: str, key: bytes, seen: int
) -> GuardModel | None:
    row = await pg.fetchrow(SELECT_MODEL_SNAPSHOT, merchant_id)
    if row is None or row["snapshot"] is None or row["snapshot_seen"] > seen:
        return None
    body = bytes(row["snapshot"])
    expected = _sign(
        key, body, row["river_version"], row["vector_schema_hash"], row["snapshot_seen"]
    )
    if not hmac.compare_digest(expected, bytes(row["signature"] or b"")):
        log.error(
            "fraud model snapshot refused: its signature does not match; rebuilding from the"
            " stored decisions",
            extra={"merchant_id": merchant_id},
        )
        return None
    if row["river_version"] != RIVER_VERSION or row["vector_schema_hash"] != VECTOR_SCHEMA_HASH:
        log.info(
            "fraud model snapshot from river %s / schema %s: rebuilding from the stored decisions",
            row["river_version"],
            row["vector_schema_hash"][:12],
            extra={"merchant_id": merchant_id},
        )
        return None
    model = pickle.loads(body)  # signed by us, and made under this river and schema
    if not isinstance(model, GuardModel):
        return None
    return model


async def learn_reviewed_cases(pg: PgConnection, merchant_id: str, model: GuardModel) -> None:
    """Teach the classifier the cases reviewers decided since the last round, each taking the
    next place in the model's stream (call under the model lock)."""
    cases = await pg.fetch(SELECT_CASES_TO_LEARN, merchant_id, CASES_PER_ROUND)
    if not cases:
        return
    held = await _held_vectors(pg, merchant_id, [case["case_id"] for case in cases])
    seqs = [_learn_case(model, case, held) for case in cases]
    await pg.execute(SET_CASES_LEARN_SEQ, merchant_id, [c["case_id"] for c in cases], seqs)


def _learn_case(model: GuardModel, case: Any, held: Mapping[int, list[dict[str, float]]]) -> int:
    """Teach the model a reviewed case (a row with `case_id` and `abusive`); its `learn_seq`."""
    case_id = case["case_id"]
    return model.learn_case(f"case:{case_id}", held.get(case_id, []), case["abusive"])


async def _held_vectors(
    pg: PgConnection, merchant_id: str, case_ids: list[int]
) -> dict[int, list[dict[str, float]]]:
    held: dict[int, list[dict[str, float]]] = {}
    for row in await pg.fetch(SELECT_CASES_HELD_FEATURES, merchant_id, case_ids):
        held.setdefault(row["case_id"], []).append(_vector(row["features"]))
    return held


def _vector(stored_features: str) -> dict[str, float]:
    return feature_vector(msgspec.json.decode(stored_features, type=IntentFeatures))


async def _replay(pg: PgConnection, merchant_id: str, model: GuardModel, up_to: int) -> None:
    """Observe the stored decisions and reviewed cases after `model.seen`, up to `up_to`, in
    the order the model first saw them."""
    while model.seen < up_to:
        last = min(up_to, model.seen + REPLAY_BATCH)
        intents = await pg.fetch(SELECT_SEEN_DECISIONS, merchant_id, model.seen, last)
        cases = await pg.fetch(SELECT_LEARNED_CASES, merchant_id, model.seen, last)
        held = await _held_vectors(pg, merchant_id, [case["case_id"] for case in cases])
        steps = sorted(
            [(row["learn_seq"], True, row) for row in intents]
            + [(row["learn_seq"], False, row) for row in cases],
            key=lambda step: step[0],
        )
        if not steps:
            return
        for _, is_intent, row in steps:
            if is_intent:
                vector = _vector(row["features"])
                model.observe(row["intent_key"], vector, model.assess(vector), row["cleared"])
            else:
                _learn_case(model, row, held)
