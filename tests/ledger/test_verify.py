"""`verify_merchant` finds each kind of break. Each tamper bypasses the append-only triggers the
way only a database superuser could, then verify must name what broke."""

import pytest

from pointguard import db
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

TAMPERS = {
    "posting amount": (
        "UPDATE ledger_postings SET amount_points = amount_points + 5"
        " WHERE merchant_id = $1 AND entry_id = $2 AND account_id > 0",
        ["entry does not balance", "stored balance differs", "hash chain: entry"],
    ),
    "posting on a made-up account": (
        "INSERT INTO ledger_postings VALUES ($1, $2, 999999999, 1), ($1, $2, -2, -1)",
        ["posting on an unknown account", "hash chain: entry"],
    ),
    "posting of a made-up entry": (
        "INSERT INTO ledger_postings VALUES ($1, $2 + 1000000, -1, 5), ($1, $2 + 1000000, -2, -5)",
        ["posting of an unknown entry"],
    ),
    "sealed entry deleted": (
        "WITH gone AS (DELETE FROM ledger_postings WHERE merchant_id = $1 AND entry_id = $2)"
        " DELETE FROM ledger_entries WHERE merchant_id = $1 AND entry_id = $2",
        ["hash chain: after seal", "stored balance differs"],
    ),
    "description rewritten": (
        "UPDATE ledger_entries SET description = 'free points'"
        " WHERE merchant_id = $1 AND entry_id = $2",
        ["hash chain: entry"],
    ),
    "lot inflated": (
        "UPDATE ledger_lots SET available_points = available_points + 7"
        " WHERE merchant_id = $1 AND lot_id = $2",
        ["lots or holds differ from balances"],
    ),
    "checkpoint shifted": (
        "UPDATE ledger_system_balances SET sealed_balance_points = sealed_balance_points - 1"
        " WHERE merchant_id = $1 AND account_id = -1 AND $2 > 0",
        ["system checkpoint differs"],
    ),
}


@pytest.mark.parametrize("tamper", TAMPERS)
async def test_verify_names_each_break(engine, run, merchant, tamper):
    first = await run(
        ops.earn, merchant, "ann", 100, key="o1", description="100 points", source="t"
    )
    await run(ops.earn, merchant, "ann", 20, key="o2", description="20 points", source="t")
    await run(seal, merchant)
    async with db.connection(engine) as pg:
        assert (await verify_merchant(pg, merchant)).ok

    sql, expected = TAMPERS[tamper]
    async with db.connection(engine) as pg:
        async with pg.transaction():
            await pg.execute("SET LOCAL session_replication_role = replica")
            await pg.execute(sql, merchant, first.entry_id)
        report = await verify_merchant(pg, merchant)
    assert not report.ok
    for problem in expected:
        assert any(p.startswith(problem) for p in report.problems), (problem, report.problems)
