from datetime import UTC, datetime, timedelta

from pointguard import db
from pointguard.ledger import member_balances, outstanding_liability, system_balances
from pointguard.ledger import operations as ops
from pointguard.ledger.accounts import AccountKind
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


async def test_earn_release_reserve_capture(run, merchant, engine):
    earn = await run(
        ops.earn,
        merchant,
        "alice",
        120,
        key="o1",
        description="120 points for order #1",
        source="test",
        release_at=NOW + timedelta(days=30),
    )
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.pending_points) == (0, 120)
    await run(ops.release, merchant, earn.entry_id)
    hold = await run(
        ops.reserve,
        merchant,
        "alice",
        100,
        key="r1",
        description="Checkout",
        source="test",
        now=NOW,
        timeout_s=600,
    )
    await run(ops.capture, merchant, hold.entry_id, description="Redeemed")
    bal = await run(member_balances, merchant, "alice")
    assert (bal.available_points, bal.pending_points, bal.reserved_points) == (20, 0, 0)
    assert await run(outstanding_liability, merchant) == 20
    assert await run(seal, merchant) == 4
    sysb = await run(system_balances, merchant)
    assert sysb[AccountKind.ISSUED] == -120 and sysb[AccountKind.REDEEMED] == 100
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems
    assert report.entries_sealed == 4
