"""A writer killed with SIGKILL mid-run leaves whole batches or none, and a ledger that verifies.

The writer is a real child process (`crash_child.py`) with its own engine and connections; the
test reads its `committed {n}` reports, kills it, waits until PostgreSQL has dropped its
sessions (so any open transaction is gone), then checks the merchant's entries batch by batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import re
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pointguard import db
from pointguard.ledger import member_balances, outstanding_liability, post_entries
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
BATCH = 20
KEY = re.compile(r"batch(\d+)-(\d+)")
LINE_TIMEOUT_S = 10


def _load_child() -> Any:
    spec = importlib.util.spec_from_file_location("crash_child", CHILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_child = _load_child()


class Child:
    """The writer process and what it has reported so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.committed: list[int] = []
        self.pids: set[int] = set()
        self.inflight: int | None = None

    @classmethod
    async def start(cls, url: str, merchant: str, *extra: str) -> Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            url,
            merchant,
            str(BATCH),
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        return cls(proc)

    async def read_until(self, done: Any) -> None:
        """Read report lines until `done(self)` holds."""
        assert self.proc.stdout is not None
        while not done(self):
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), LINE_TIMEOUT_S)
            except TimeoutError:
                raise AssertionError(f"child silent for {LINE_TIMEOUT_S}s") from None
            if not line:
                stderr = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"child exited early: {stderr.decode()[-3000:]}")
            word, number = line.decode().split()
            if word == "committed":
                assert int(number) == len(self.committed), "batches are committed in order"
                self.committed.append(int(number))
            elif word == "pid":
                self.pids.add(int(number))
            elif word == "inflight":
                self.inflight = int(number)

    async def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL
        # A report printed between our last read and the kill still counts as reported.
        assert self.proc.stdout is not None
        rest = await self.proc.stdout.read()
        for line in rest.decode().splitlines():
            word, number = line.split()
            if word == "committed":
                self.committed.append(int(number))
            elif word == "pid":
                self.pids.add(int(number))

    async def ensure_dead(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


async def wait_sessions_gone(engine: Any, pids: set[int], timeout_s: float = 10) -> None:
    """PostgreSQL ends a dead client's session (rolling back its transaction) once it notices
    the closed socket; wait for that so nothing of the child can still commit."""
    deadline = time.monotonic() + timeout_s
    async with db.connection(engine) as pg:
        while True:
            alive = await pg.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pids)
            )
            if alive == 0:
                return
            assert time.monotonic() < deadline, f"child sessions {pids} still alive"
            await asyncio.sleep(0.05)


async def batches_in_db(engine: Any, merchant: str) -> dict[int, set[int]]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT idempotency_key FROM ledger_entries WHERE merchant_id = $1", merchant
        )
    found: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        match = KEY.fullmatch(row["idempotency_key"])
        assert match, f"unexpected entry {row['idempotency_key']!r}"
        found[int(match[1])].add(int(match[2]))
    return dict(found)


async def assert_whole_batches_and_verifies(
    engine: Any, run: Any, merchant: str, present: dict[int, set[int]]
) -> None:
    for n, items in present.items():
        assert items == set(range(BATCH)), f"batch {n} is partial: {sorted(items)}"
    assert sorted(present) == list(range(len(present))), "batches are a prefix 0..k"
    expected_postings = 2 * BATCH * len(present)
    async with db.connection(engine) as pg:
        postings = await pg.fetchval(
            "SELECT count(*) FROM ledger_postings WHERE merchant_id = $1", merchant
        )
    assert postings == expected_postings

    # batch n gives each of the 5 members (n + 1) points BATCH / 5 times
    per_member = BATCH // crash_child.MEMBERS * sum(n + 1 for n in present)
    for k in range(crash_child.MEMBERS):
        bal = await run(member_balances, merchant, f"member-{k}")
        assert (bal.available_points, bal.pending_points, bal.reserved_points) == (per_member, 0, 0)
    assert await run(outstanding_liability, merchant) == per_member * crash_child.MEMBERS

    await run(seal, merchant)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems
    assert report.entries_sealed == BATCH * len(present)


async def test_sigkill_mid_run_leaves_whole_batches(engine, database_url, run, merchant):
    child = await Child.start(database_url, merchant)
    try:
        await child.read_until(lambda c: len(c.committed) >= 6)
        await asyncio.sleep(random.uniform(0, 0.01))  # land the kill inside a later batch
        await child.kill()
    finally:
        await child.ensure_dead()
    assert child.pids
    await wait_sessions_gone(engine, child.pids)

    present = await batches_in_db(engine, merchant)
    reported = set(child.committed)
    assert reported <= set(present), f"reported committed but missing: {reported - set(present)}"
    # at most the batch in flight can have committed without being reported
    assert set(present) - reported <= {max(reported) + 1}
    await assert_whole_batches_and_verifies(engine, run, merchant, present)

    # A restarted writer re-posts from the last batch it knows of: committed batches replay,
    # anything lost is posted now, and nothing is doubled.
    last = max(reported)
    for n in range(last + 3):
        posted = await run(post_entries, crash_child.batch(merchant, n, BATCH))
        assert all(p.replayed for p in posted) == (n in present), n
        assert not any(p.replayed for p in posted) or n in present
    present_after = await batches_in_db(engine, merchant)
    assert sorted(present_after) == list(range(last + 3))
    await assert_whole_batches_and_verifies(engine, run, merchant, present_after)


async def test_sigkill_with_transaction_open_leaves_nothing_of_it(
    engine, database_url, run, merchant
):
    """Batch 3 is fully written (entries, balances, postings, lots) but not committed when the
    writer dies: none of it may appear, before or after the kill."""
    child = await Child.start(database_url, merchant, "3")
    try:
        await child.read_until(lambda c: c.inflight is not None)
        assert (child.committed, child.inflight) == ([0, 1, 2], 3)
        async with db.connection(engine) as pg:
            states = await pg.fetch(
                "SELECT state FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(child.pids)
            )
        assert "idle in transaction" in {s["state"] for s in states}
        assert sorted(await batches_in_db(engine, merchant)) == [0, 1, 2]
        await child.kill()
    finally:
        await child.ensure_dead()
    await wait_sessions_gone(engine, child.pids)

    present = await batches_in_db(engine, merchant)
    assert sorted(present) == [0, 1, 2]
    await assert_whole_batches_and_verifies(engine, run, merchant, present)

    # The killed transaction held the members' account locks; they are free again.
    posted = await run(post_entries, crash_child.batch(merchant, 3, BATCH))
    assert not any(p.replayed for p in posted)
    await assert_whole_batches_and_verifies(
        engine, run, merchant, await batches_in_db(engine, merchant)
    )
