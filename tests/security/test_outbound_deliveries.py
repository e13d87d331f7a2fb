"""Outbound deliveries are bounded (issue 9, item 5): a merchant's endpoint cannot make the
dispatcher read without limit, hold a delivery past its deadline, keep other merchants
waiting, or have an event sent twice because a slow send outlived its claim.

The endpoints here are raw sockets on 127.0.0.1 that misbehave on purpose (a huge body, a
trickle, no answer at all), next to the well-behaved receiver of `tests/plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from pointguard import db
from pointguard.config import ALLOW_LOOPBACK_ENDPOINTS
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import (
    CIRCUIT_THRESHOLD,
    DELIVERY_DEADLINE_S,
    LEASE_S,
    MAX_RESPONSE_BYTES,
    deliver_due,
    deliver_merchant,
    dispatch_forever,
)
from pointguard.plugin.merchants import NewMerchant, create_merchant
from pointguard.program.outbox import write_events

KEY = os.urandom(32)
HUGE_BODY_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# What may sit in the kernel's socket buffers on loopback, sent but never read by the client.
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
TRICKLE_INTERVAL_S = 0.25
SHORT_DEADLINE_S = 1.0


class RawEndpoint:
    """An HTTP endpoint on 127.0.0.1 that reads each request and then does `behave(conn)`, in
    a thread per connection; `sent_bytes` counts the body bytes the client took from it."""

    def __init__(self, behave: Callable[[RawEndpoint, socket.socket], None]) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.sent_bytes = 0
        self.requests = 0
        self.url = ""

    def send_counted(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent_bytes += len(data)

    def serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            with contextlib.suppress(OSError):  # the client closed the connection: as hoped
                self.behave(self, conn)


def huge_error_body(endpoint: RawEndpoint, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 500 Oops\r\ncontent-length: %d\r\n\r\n" % HUGE_BODY_BYTES)
    chunk = b"x" * CHUNK_BYTES
    while endpoint.sent_bytes < HUGE_BODY_BYTES and not endpoint.stop.is_set():
        endpoint.send_counted(conn, chunk)


def trickle(endpoint: RawEndpoint, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
    while not endpoint.stop.wait(TRICKLE_INTERVAL_S):
        endpoint.send_counted(conn, b"x")


def hang(endpoint: RawEndpoint, conn: socket.socket) -> None:
    endpoint.stop.wait()


@contextmanager
def raw_endpoint(
    behave: Callable[[RawEndpoint, socket.socket], None],
) -> Iterator[RawEndpoint]:
    endpoint = RawEndpoint(behave)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)

    def accept() -> None:
        while not endpoint.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=endpoint.serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
    try:
        yield endpoint
    finally:
        endpoint.stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(autouse=True)
def loopback(monkeypatch):
    """Every endpoint here is on 127.0.0.1."""
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "1")


async def shop(run, url: str, events: int, prefix: str = "shop") -> NewMerchant:
    merchant_id = f"{prefix}-{os.urandom(6).hex()}"
    merchant: NewMerchant = await run(
        create_merchant, KEY, "Bounded Shop", endpoint_url=url, merchant_id=merchant_id
    )
    await run(
        write_events,
        merchant.merchant_id,
        [("points.pending", {"member_id": "ann", "points": i + 1}) for i in range(events)],
    )
    return merchant


async def outcomes(engine, merchant_id: str) -> list[tuple[str, str | None]]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT status, last_error FROM outbox_deliveries WHERE merchant_id = $1"
            " ORDER BY outbox_id",
            merchant_id,
        )
    return [(r["status"], r["last_error"]) for r in rows]


async def test_a_huge_answer_is_read_a_few_kib_deep_and_no_further(engine, run):
    """A 200 MiB error body grew the process by 413 MiB: the whole answer was read into
    memory. Now a few KiB are read and the connection is closed on the rest."""
    with raw_endpoint(huge_error_body) as endpoint:
        merchant = await shop(run, endpoint.url, events=1)
        done = await deliver_merchant(engine, CredentialCache(KEY), merchant.merchant_id)
        assert done.retried == 1
        assert await outcomes(engine, merchant.merchant_id) == [
            ("pending", "endpoint answered HTTP 500")
        ]
        await asyncio.sleep(0.2)  # the server thread sees the connection closed
        sent = endpoint.sent_bytes
    assert MAX_RESPONSE_BYTES <= 4 * 1024
    assert sent < MAX_BUFFERED_BYTES, f"the client took {sent} bytes of a {HUGE_BODY_BYTES} body"


async def test_a_trickling_answer_is_cut_off_at_the_deadline(engine, run):
    """httpx's timeout is per read, so a byte now and then held one send past 40 s. The
    deadline is for the whole delivery (shortened here to keep the test quick)."""
    with raw_endpoint(trickle) as endpoint:
        merchant = await shop(run, endpoint.url, events=1)
        started = time.monotonic()
        done = await deliver_merchant(
            engine, CredentialCache(KEY), merchant.merchant_id, deadline_s=SHORT_DEADLINE_S
        )
        took_s = time.monotonic() - started
    assert done.retried == 1
    assert endpoint.sent_bytes >= 2  # it was trickling, not silent
    assert SHORT_DEADLINE_S <= took_s < SHORT_DEADLINE_S + 2
    assert await outcomes(engine, merchant.merchant_id) == [
        ("pending", "DeadlineExceeded: no complete answer within 1 s")
    ]


def test_a_delivery_ends_before_its_claim_does():
    """Another dispatcher takes a claimed delivery again once its lease ends: a send must be
    over by then, or the event is sent twice."""
    assert DELIVERY_DEADLINE_S < LEASE_S


async def test_a_deadline_past_the_lease_cannot_be_asked_for(engine):
    with pytest.raises(ValueError, match="deadline_s"):
        await deliver_merchant(
            engine, CredentialCache(KEY), "anyone", deadline_s=DELIVERY_DEADLINE_S + 1
        )


async def test_a_dead_endpoints_circuit_opens_within_one_deadline(engine, run):
    """An endpoint that never answers cost the others CIRCUIT_THRESHOLD deadlines, one after
    another, before its circuit opened; its first attempts now wait out one deadline
    together."""
    with raw_endpoint(hang) as endpoint:
        merchant = await shop(run, endpoint.url, events=CIRCUIT_THRESHOLD + 3)
        started = time.monotonic()
        done = await deliver_merchant(
            engine, CredentialCache(KEY), merchant.merchant_id, deadline_s=SHORT_DEADLINE_S
        )
        took_s = time.monotonic() - started
    assert (done.retried, done.circuit_open) == (CIRCUIT_THRESHOLD, 1)
    assert endpoint.requests == CIRCUIT_THRESHOLD
    assert took_s < 2 * SHORT_DEADLINE_S


async def test_a_hanging_merchant_does_not_hold_up_another_in_one_pass(engine, run, receiver):
    """The pass served one merchant at a time, so every merchant waited for a slow one."""
    with raw_endpoint(hang) as endpoint:
        slow = await shop(run, endpoint.url, events=1, prefix="a-slow")  # visited first
        prompt = await shop(run, receiver.url, events=1, prefix="b-prompt")
        credentials = CredentialCache(KEY)
        passing = asyncio.create_task(
            deliver_due(engine, credentials, now=datetime.now(UTC), deadline_s=3)
        )
        try:
            await _delivered_within(engine, prompt.merchant_id, seconds=2)
            assert not passing.done()  # the slow merchant is still being waited for
        finally:
            await passing
    assert [status for status, _ in await outcomes(engine, slow.merchant_id)] == ["pending"]


async def test_the_loop_delivers_to_others_while_one_endpoint_hangs(engine, run, receiver):
    with raw_endpoint(hang) as endpoint:
        await shop(run, endpoint.url, events=CIRCUIT_THRESHOLD, prefix="a-hung")
        loop = asyncio.create_task(dispatch_forever(engine, CredentialCache(KEY), deadline_s=5))
        try:
            await _until(lambda: endpoint.requests > 0, seconds=3)  # it hangs on them now
            prompt = await shop(run, receiver.url, events=1, prefix="b-later")
            await _delivered_within(engine, prompt.merchant_id, seconds=3)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)


async def _delivered_within(engine, merchant_id: str, *, seconds: float) -> None:
    statuses: list[str] = []

    async def delivered() -> bool:
        statuses[:] = [status for status, _ in await outcomes(engine, merchant_id)]
        return statuses == ["delivered"]

    deadline = time.monotonic() + seconds
    while not await delivered():
        assert time.monotonic() < deadline, f"{merchant_id}: {statuses} after {seconds} s"
        await asyncio.sleep(0.05)


async def _until(condition: Callable[[], bool], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.05)
