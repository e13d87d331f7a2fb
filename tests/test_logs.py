"""Log lines from the real app and dispatcher: a rejected webhook is one JSON line naming its
merchant, webhook and code; a request's fields stay with that request; an accepted webhook is
logged only at debug; text lines cannot be split or forged."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from pointguard import logs
from pointguard.config import load_settings
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import deliver_merchant
from pointguard.plugin.merchants import create_merchant
from pointguard.program.outbox import write_events


class Lines:
    """What the `pointguard` loggers write, formatted as `serve` formats it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def json(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def lines():
    captured = Lines()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("pointguard")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield captured
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def shop(served, run):
    app, client = served
    return client, await run(create_merchant, app.state.secret_key, "Logged Shop")


async def test_a_rejected_webhook_is_one_json_line_with_merchant_webhook_and_code(
    shop, lines, signed_webhook
):
    client, merchant = shop
    body, headers = signed_webhook(merchant.webhook_secret, "msg_logged")
    forged = {**headers, "webhook-signature": "v1,AAAA"}
    response = await client.post(f"/webhooks/{merchant.merchant_id}", content=body, headers=forged)
    assert response.status_code == 401

    [line] = lines.json()
    assert set(line) >= {"time", "level", "logger", "message"}
    assert str(line["time"]).endswith("Z")
    assert line["level"] == "warning"
    assert line["logger"] == "pointguard.http_errors"
    assert line["message"] == "webhook rejected"
    assert line["merchant_id"] == merchant.merchant_id
    assert line["webhook_id"] == "msg_logged"
    assert line["sender"] == "standard"
    assert (line["code"], line["status"]) == ("bad_signature", 401)


async def test_a_request_fields_do_not_reach_the_next_request(shop, lines, signed_webhook):
    client, merchant = shop
    body, headers = signed_webhook(merchant.webhook_secret, "msg_first")
    forged = {**headers, "webhook-signature": "v1,AAAA"}
    await client.post(f"/webhooks/{merchant.merchant_id}", content=body, headers=forged)
    await client.post(
        f"/webhooks/{merchant.merchant_id}/woocommerce",
        content=b"{}",
        headers={"x-wc-webhook-signature": "AAAA"},
    )
    await client.post("/webhooks/m-unknown", content=body, headers=headers)

    first, second, third = lines.json()
    assert (first["sender"], first["webhook_id"]) == ("standard", "msg_first")
    assert second["sender"] == "woocommerce"
    assert "webhook_id" not in second  # refused before its id was known
    assert (third["merchant_id"], third["code"], third["level"]) == (
        "m-unknown",
        "unknown_merchant",
        "info",
    )
    assert logs.bound_fields() == {}  # nothing left behind in the caller's context


async def test_accepted_webhooks_are_logged_only_at_debug(shop, lines, signed_webhook):
    client, merchant = shop
    path = f"/webhooks/{merchant.merchant_id}"
    body, headers = signed_webhook(merchant.webhook_secret, "msg_quiet")
    assert (await client.post(path, content=body, headers=headers)).status_code == 202
    assert lines.json() == []

    logging.getLogger("pointguard").setLevel(logging.DEBUG)
    body, headers = signed_webhook(merchant.webhook_secret, "msg_loud")
    assert (await client.post(path, content=body, headers=headers)).status_code == 202
    [line] = lines.json()
    assert line["message"] == "webhook accepted"
    assert (line["merchant_id"], line["webhook_id"]) == (merchant.merchant_id, "msg_loud")
    assert (line["inbox_status"], line["replayed"]) == ("pending", False)


async def test_dispatcher_lines_name_the_merchant_and_the_attempt(engine, run, lines):
    key = os.urandom(32)
    merchant = await run(create_merchant, key, "Down Shop", endpoint_url="http://127.0.0.1:1/")
    await run(write_events, merchant.merchant_id, [("points.pending", {"points": 1})])
    await deliver_merchant(engine, CredentialCache(key), merchant.merchant_id)
    [line] = lines.json()
    assert (line["message"], line["level"]) == ("webhook delivery", "info")
    assert line["merchant_id"] == merchant.merchant_id
    assert (line["attempt"], line["http_status"], line["outcome"]) == (1, None, "failed")
    assert isinstance(line["outbox_id"], int)


def test_log_fields_hold_inside_their_block_only(lines):
    log = logging.getLogger("pointguard.test")
    with logs.log_fields(merchant_id="m-1"):
        log.info("inside", extra={"outbox_id": 7})
    log.info("outside")
    inside, outside = lines.json()
    assert (inside["merchant_id"], inside["outbox_id"]) == ("m-1", 7)
    assert "merchant_id" not in outside


def test_text_lines_quote_what_could_split_or_forge_them():
    record = logging.makeLogRecord(
        {"name": "pointguard.test", "levelno": logging.INFO, "levelname": "INFO", "msg": "a\nb"}
    )
    with logs.log_fields(merchant_id='m 1\nlevel=error "x"', webhook_id="msg_1"):
        line = logs.TextFormatter().format(record)
    assert "\n" not in line
    assert line.split(" ", 1)[1].startswith("INFO pointguard.test a b")
    assert line.endswith(' merchant_id="m 1\\nlevel=error \\"x\\"" webhook_id=msg_1')


def test_outside_values_are_cut_to_a_bound():
    with logs.log_fields(merchant_id="m" * 10_000):
        assert len(logs.bound_fields()["merchant_id"]) == logs.MAX_FIELD_CHARS


def test_log_settings_are_checked():
    assert load_settings({}).log_format == "json"
    assert load_settings({"POINTGUARD_LOG_FORMAT": "TEXT"}).log_format == "text"
    with pytest.raises(ValueError, match="POINTGUARD_LOG_LEVEL must be one of"):
        load_settings({"POINTGUARD_LOG_LEVEL": "loud"})
