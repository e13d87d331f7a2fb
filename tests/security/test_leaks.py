"""Small leaks (issue 9, item 9): what the HTTP app tells anyone who asks, and what it says at
start. A failure's detail goes to the log, never into the answer."""

from __future__ import annotations

import logging
import os

from pointguard import db
from pointguard.plugin.merchants import create_merchant

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


async def test_readyz_says_not_ready_and_logs_the_connection_error(open_app, caplog):
    async with open_app() as (app, http):
        await app.state.engine.dispose()
        app.state.engine = db.create_engine(UNREACHABLE)
        with caplog.at_level(logging.WARNING, logger="pointguard"):
            ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reason": "not ready"}
    assert "127.0.0.1" not in ready.text and ":1" not in ready.text
    logged = [r for r in caplog.records if r.getMessage() == "not ready"]
    assert len(logged) == 1 and "127.0.0.1" in str(logged[0].__dict__["detail"])


async def test_a_credential_that_does_not_decrypt_is_a_bare_500_and_logged(
    open_app, run, signed_webhook, caplog
):
    other_key = os.urandom(32)  # not the app's key: every stored secret is unreadable to it
    merchant = await run(create_merchant, other_key, "Wrong Key Shop")
    body, headers = signed_webhook(merchant.webhook_secret, "msg_unreadable")
    async with open_app() as (_, http):
        with caplog.at_level(logging.WARNING, logger="pointguard"):
            answer = await http.post(
                f"/webhooks/{merchant.merchant_id}", content=body, headers=headers
            )
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {"code": "internal_error", "message": "internal error; see the logs"}
    }
    logged = [r.__dict__ for r in caplog.records if r.__dict__.get("code")]
    assert [r["code"] for r in logged] == ["credential_unreadable"]
    assert "not in the keyring" in logged[0]["detail"]
    assert merchant.merchant_id in logged[0]["detail"]


async def test_an_open_metrics_endpoint_is_said_loudly_at_start(open_app, caplog):
    with caplog.at_level(logging.WARNING, logger="pointguard"):
        async with open_app():
            pass
    opened = [r for r in caplog.records if "POINTGUARD_METRICS_TOKEN" in r.getMessage()]
    assert [r.levelno for r in opened] == [logging.WARNING]
    assert "/metrics is open" in opened[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pointguard"):
        async with open_app(POINTGUARD_METRICS_TOKEN="s3cret"):
            pass
    assert not [r for r in caplog.records if "POINTGUARD_METRICS_TOKEN" in r.getMessage()]
