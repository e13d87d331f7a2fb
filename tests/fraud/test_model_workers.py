"""Two worker processes applying one merchant's inbox decide exactly as one worker does: every
intent gets the same decision, score and place in the model's stream, because a worker takes
the merchant's model lock before it claims rows (`fraud/model_store.py`)."""

import asyncio
import json
import random
import sys
from datetime import UTC, datetime, timedelta

from pointguard import db
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from tests.fraud.drain_inbox import drain

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
NOW = T0 + timedelta(days=400)  # the workers' clock: every row is due
BATCH = 20

PROGRAM = """
name = "Two workers"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[guard]
model_warmup = 30
model_alert_percent = 8.0
"""

INSERT_INBOX_ROW = """
INSERT INTO inbox (merchant_id, webhook_id, event_type, payload, received_at, next_attempt_at)
VALUES ($1, $2, 'order.paid', $3::jsonb, $4, $4)
"""

SELECT_DECISIONS = """
SELECT intent_key, decision, decided_by, score, learn_seq, reasons::text AS reasons
FROM fraud_decisions WHERE merchant_id = $1 ORDER BY intent_key
"""


def stream(count: int) -> list[tuple[str, str, datetime]]:
    """(webhook id, payload, received at): orders of 30 members; a few share a card."""
    draw = random.Random(11)
    rows = []
    for n in range(count):
        member = f"c{draw.randrange(30)}"
        card = "card-shared" if draw.random() < 0.05 else f"card-{member}"
        at = T0 + timedelta(hours=2 * n)
        payload = {
            "type": "order.paid",
            "timestamp": at.isoformat(),
            "data": {
                "order_id": f"o-{n}",
                "customer_id": member,
                "currency": "EUR",
                "payment_fingerprint": card,
                "device_id": f"dev-{member}",
                "lines": [
                    {
                        "line_id": "1",
                        "sku": "S",
                        "category": "c",
                        "quantity": draw.choice([1, 1, 1, 2, 9]),
                        "unit_price_minor": int(draw.lognormvariate(8, 0.7)),
                    }
                ],
            },
        }
        rows.append((f"wh-{n:05d}", json.dumps(payload), at))
    return rows


async def fill_inbox(engine, run, merchant: str, rows) -> None:
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(days=1))
    async with db.connection(engine) as pg:
        await pg.executemany(INSERT_INBOX_ROW, [(merchant, *row) for row in rows])


async def decisions(engine, merchant: str):
    async with db.connection(engine) as pg:
        return [tuple(row.values()) for row in await pg.fetch(SELECT_DECISIONS, merchant)]


async def worker_process(database_url: str, merchant: str) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fraud.drain_inbox",
        database_url,
        merchant,
        NOW.isoformat(),
        str(BATCH),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == 0
    return int(out)


async def test_two_worker_processes_decide_as_one(database_url, engine, run):
    rows = stream(240)
    alone, shared = (
        "m-one-worker-" + random.randbytes(4).hex(),
        "m-two-workers-" + random.randbytes(4).hex(),
    )
    await fill_inbox(engine, run, alone, rows)
    await fill_inbox(engine, run, shared, rows)

    assert await drain(database_url, alone, NOW, BATCH) == len(rows)
    applied = await asyncio.gather(
        worker_process(database_url, shared), worker_process(database_url, shared)
    )
    assert sum(applied) == len(rows), applied

    one, two = await decisions(engine, alone), await decisions(engine, shared)
    assert len(one) == len(rows)
    assert {decided_by for _, _, decided_by, *_ in one} >= {"model", "shared_card"}
    assert two == one
