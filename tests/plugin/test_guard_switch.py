"""`POINTGUARD_FRAUD_GUARD`: the server's inbox workers (`serve`'s and `pointguard worker`'s)
apply events through the fraud guard unless an operator switches it off; off, they apply them
unscreened (no decision written) and say so loudly when they start; any other value is
refused at start-up."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from pointguard import db
from pointguard.app import create_app
from pointguard.config import load_settings
from tests.cli_helpers import run_cli
from tests.plugin.conftest import SECRET_KEY, merchant_with_program
from tests.plugin.test_ingest import paid, post
from tests.test_logs import lines  # noqa: F401  (a fixture: what the loggers write)

APPLIED_WITHIN_S = 30.0
OFF_WARNING = "POINTGUARD_FRAUD_GUARD=off"


@asynccontextmanager
async def server_with_workers(database_url: str, **environ: str) -> AsyncIterator[Any]:
    """The app as `serve` runs it, with its inbox workers (no upkeep, no dispatcher): yields
    `(app, client)`."""
    settings = load_settings(
        {"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": SECRET_KEY, **environ}
    )
    app = create_app(settings, upkeep=False, workers=True, dispatch=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
            yield app, client


async def applied_decisions(engine, merchant_id: str, webhook_id: str) -> int:
    """Once the webhook is applied (bounded wait), the merchant's fraud decisions."""
    deadline = time.monotonic() + APPLIED_WITHIN_S
    async with db.connection(engine) as pg:
        while True:
            status = await pg.fetchval(
                "SELECT status FROM inbox WHERE merchant_id = $1 AND webhook_id = $2",
                merchant_id,
                webhook_id,
            )
            if status == "applied":
                return int(
                    await pg.fetchval(
                        "SELECT count(*) FROM fraud_decisions WHERE merchant_id = $1", merchant_id
                    )
                )
            assert status == "pending" and time.monotonic() < deadline, status
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("switch", "screened"), [(None, True), ("on", True), ("OFF", False)])
async def test_serve_screens_an_order_unless_the_guard_is_switched_off(
    database_url,
    engine,
    run,
    switch,
    screened,
    lines,  # noqa: F811  (the fixture imported)
):
    environ = {} if switch is None else {"POINTGUARD_FRAUD_GUARD": switch}
    async with server_with_workers(database_url, **environ) as (app, client):
        merchant = await merchant_with_program(run, app.state.secret_key, "Switch Shop")
        accepted = await post(client, merchant, paid("7001"), "msg_switch")
        assert accepted.status_code == 202, accepted.text
        decisions = await applied_decisions(engine, merchant.merchant_id, "msg_switch")
    assert (decisions > 0) == screened
    warned = [line for line in lines.json() if OFF_WARNING in str(line["message"])]
    assert (len(warned) == 1) == (not screened)
    if warned:
        assert warned[0]["level"] == "warning"


async def test_pointguard_worker_with_the_guard_off_applies_unscreened(
    database_url, engine, run, open_app, tmp_path
):
    async with open_app() as (app, client):
        merchant = await merchant_with_program(run, app.state.secret_key, "Worker Shop")
        accepted = await post(client, merchant, paid("7002"), "msg_worker")
        assert accepted.status_code == 202, accepted.text
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": SECRET_KEY,
        "POINTGUARD_DATA_DIR": str(tmp_path / "data"),
        "POINTGUARD_METRICS_DIR": str(tmp_path / "metrics"),
        "POINTGUARD_FRAUD_GUARD": "off",
    }
    with log.open("wb") as sink:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pointguard.cli", "worker", env=env, stdout=sink, stderr=sink
        )
    try:
        assert await applied_decisions(engine, merchant.merchant_id, "msg_worker") == 0
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 30)
    assert OFF_WARNING in log.read_text()


def test_a_guard_switch_neither_on_nor_off_is_refused_at_start_up(tmp_path):
    with pytest.raises(ValueError, match="POINTGUARD_FRAUD_GUARD must be one of on, off"):
        load_settings({"POINTGUARD_FRAUD_GUARD": "no"})
    refused = run_cli(
        {**os.environ, "POINTGUARD_DATA_DIR": str(tmp_path), "POINTGUARD_FRAUD_GUARD": "0"},
        "worker",
    )
    assert refused.returncode != 0
    assert "POINTGUARD_FRAUD_GUARD must be one of on, off, not '0'" in refused.stderr
