"""Slow and unknown callers cannot tie the server up (issue 9, item 8).

- A request body must arrive within `POINTGUARD_BODY_READ_TIMEOUT_S`: a sender trickling it
  byte by byte gets a 408 and its connection closed.
- `pointguard serve` takes at most `POINTGUARD_MAX_CONNECTIONS` connections per process
  (uvicorn's `limit_concurrency`); past that, a request is answered 503 at once.
- An unknown merchant id is remembered as unknown for `UNKNOWN_MERCHANT_TTL_S`, and at most
  `MAX_CONCURRENT_CREDENTIAL_LOADS` credential loads run at once: a flood of made-up ids makes
  one query per id per TTL and never holds the whole pool, so known merchants keep being served.

Every server here is one the test starts on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench.loopback_http import free_port
from pointguard import db
from pointguard.plugin.credentials import MAX_CONCURRENT_CREDENTIAL_LOADS, CredentialCache
from pointguard.plugin.merchants import create_merchant, merchant_credentials
from tests.plugin.conftest import SECRET_KEY, merchant_with_program
from tests.plugin.test_ingest import paid, serving_app, signed
from tests.plugin.test_webhook_fuzz import snapshot
from tests.test_metrics import wait_ready

BODY_READ_TIMEOUT_S = 1.0
TRICKLE_INTERVAL_S = 0.2
# How late after the deadline the 408 may come on a busy test machine.
ANSWER_MARGIN_S = 2.0


class CountedLoads:
    """`merchant_credentials`, counting the loads of each merchant id and how many ran at once."""

    def __init__(self) -> None:
        self.loads: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, pg, key, merchant_id):
        self.loads[merchant_id] += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0.01)  # long enough for a flood to pile up
            return await merchant_credentials(pg, key, merchant_id)
        finally:
            self.running -= 1


async def trickle(writer: asyncio.StreamWriter) -> None:
    """Send a body one byte at a time, until the server stops reading."""
    try:
        while True:
            writer.write(b"{")
            await writer.drain()
            await asyncio.sleep(TRICKLE_INTERVAL_S)
    except (ConnectionError, OSError):
        return


def content_length(head: bytes) -> int:
    """The Content-Length of a response head."""
    for line in head.lower().split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return int(value)
    raise AssertionError(f"no content-length in {head!r}")


async def connection_closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection after its answer.

    A server that closes while trickled bytes sit unread in its socket sends a reset rather
    than a clean end of stream; both mean closed.
    """
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


async def test_a_trickled_body_is_a_408_within_the_deadline_and_the_connection_closes(
    database_url, run, engine
):
    merchant = await merchant_with_program(run, base64.b64decode(SECRET_KEY), "Slow")
    before = await snapshot(engine, merchant.merchant_id)
    timeout = str(BODY_READ_TIMEOUT_S)
    async with serving_app(database_url, POINTGUARD_BODY_READ_TIMEOUT_S=timeout) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(
            f"POST /webhooks/{merchant.merchant_id} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        sending = asyncio.create_task(trickle(writer))
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT_S + ANSWER_MARGIN_S):
                status_line = await reader.readline()
                answered_s = time.monotonic() - started
                sending.cancel()
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(content_length(head))
                closed = await connection_closed(reader)
        finally:
            sending.cancel()
            writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert BODY_READ_TIMEOUT_S <= answered_s < BODY_READ_TIMEOUT_S + ANSWER_MARGIN_S
    assert b"request_timeout" in body and b"connection: close" in head.lower()
    assert closed
    assert await snapshot(engine, merchant.merchant_id) == before


async def http_get(host: str, port: int) -> tuple[bytes, asyncio.StreamWriter]:
    """GET /healthz on a new connection left open; (status line, the connection's writer)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        return await reader.readline(), writer


def start_serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`pointguard serve` in one process (the limit is per process), logging to `log`."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "pointguard.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def test_serve_answers_503_past_its_connection_limit(database_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": SECRET_KEY,
        "POINTGUARD_DATA_DIR": str(tmp_path / "data"),
        "POINTGUARD_METRICS_DIR": str(tmp_path / "metrics"),
        "POINTGUARD_MAX_CONNECTIONS": "3",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    server = start_serve(env, port, log)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", server, log)
        await asyncio.sleep(0.5)  # the readiness probe's connection is gone
        first, one = await http_get("127.0.0.1", port)
        second, two = await http_get("127.0.0.1", port)
        third, three = await http_get("127.0.0.1", port)
        assert (first[9:12], second[9:12], third[9:12]) == (b"200", b"200", b"503")
        for writer in (one, two, three):
            writer.close()
        await asyncio.sleep(0.5)
        again, four = await http_get("127.0.0.1", port)
        four.close()
        assert again[9:12] == b"200"
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)


@asynccontextmanager
async def counted(open_app, **cache_options) -> AsyncIterator[tuple[object, object, CountedLoads]]:
    """`(app, client, loads)`: the app with a credential cache whose loads are counted."""
    async with open_app() as (app, client):
        loads = CountedLoads()
        app.state.credentials = CredentialCache(app.state.secret_key, load=loads, **cache_options)
        yield app, client, loads


async def test_an_unknown_merchant_is_loaded_once_per_ttl_then_seen_once_created(
    open_app, run, engine
):
    made_up = "m-made-up-shop"
    async with counted(open_app, unknown_ttl_s=1.0) as (app, client, loads):
        flood = [client.post(f"/webhooks/{made_up}", content=b"{}") for _ in range(30)]
        answers = await asyncio.gather(*flood)
        answers += [await client.post(f"/webhooks/{made_up}", content=b"{}") for _ in range(10)]
        assert {a.status_code for a in answers} == {404}
        assert loads.loads[made_up] == 1

        merchant = await run(create_merchant, app.state.secret_key, "Late", merchant_id=made_up)
        await asyncio.sleep(1.1)  # the unknown id is forgotten after its TTL
        body, headers = signed(merchant.webhook_secret, paid("1"), webhook_id="msg_late")
        accepted = await client.post(f"/webhooks/{made_up}", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        assert loads.loads[made_up] == 2


async def test_a_flood_of_made_up_ids_never_holds_the_pool(open_app, run, engine):
    async with counted(open_app) as (app, client, loads):
        merchant = await merchant_with_program(run, app.state.secret_key, "Busy")
        before = await snapshot(engine, merchant.merchant_id)
        flood = [client.post(f"/webhooks/m-nobody-{n}", content=b"{}") for n in range(60)]
        body, headers = signed(merchant.webhook_secret, paid("2"), webhook_id="msg_busy")
        known = client.post(f"/webhooks/{merchant.merchant_id}", content=body, headers=headers)
        *refused, accepted = await asyncio.gather(*flood, known)
        assert {r.status_code for r in refused} == {404}
        assert accepted.status_code == 202, accepted.text
        assert 1 < loads.most_at_once <= MAX_CONCURRENT_CREDENTIAL_LOADS
        assert (await snapshot(engine, merchant.merchant_id))[0] == before[0] + 1


async def test_the_unknown_ids_remembered_are_bounded(engine):
    loads = CountedLoads()
    cache = CredentialCache(os.urandom(32), load=loads, max_unknown=3)
    for n in range(5):
        assert await cache.load(engine, f"m-unknown-{n}") is None
    await cache.load(engine, "m-unknown-4")  # among the newest three: remembered
    await cache.load(engine, "m-unknown-0")  # pushed out by newer ones: loaded again
    assert (loads.loads["m-unknown-4"], loads.loads["m-unknown-0"]) == (1, 2)


@pytest.mark.parametrize("name", ["POINTGUARD_BODY_READ_TIMEOUT_S", "POINTGUARD_MAX_CONNECTIONS"])
def test_the_bounds_are_settings_that_refuse_nonsense(name):
    from pointguard.config import load_settings

    with pytest.raises(ValueError, match=name):
        load_settings({name: "0"})
