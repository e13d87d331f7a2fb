"""A stream posted to PointGuard as signed Standard Webhooks, the way a storefront sends them.

Each line's body (`type`, `timestamp`, `data`; never the `label`) goes to
`{url}/webhooks/{merchant}` under the line's `webhook_id` (else one derived from the body),
signed `v1` with the merchant's inbound secret and stamped with the time of sending: the server
refuses a signature timestamp more than 5 minutes away, while the event keeps its own time in
the body. `checkout.redeemed` lines are counted and skipped: a checkout goes through the
GraphQL API, which the sender does not call.

Up to `concurrency` requests are in flight, but never two of one customer, nor a referee's
before their referrer's earlier events are answered: the server applies a customer's events in
the order it stored them, and a referral code must be known before it is used. A 408, a 5xx or
a connection error is tried again (`MAX_TRIES` in all, the same webhook id, so a request that
was stored before its answer was lost is not stored twice); any other non-2xx is a refusal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx

from pointguard.fraud.simulation.events import CHECKOUT
from pointguard.plugin.signatures import standard_webhook_headers

MAX_CONCURRENCY = 64
MAX_TRIES = 4
FIRST_RETRY_WAIT_S = 0.5  # doubled after each try
REQUEST_TIMEOUT_S = 30.0
RETRIED_STATUSES = frozenset({408, 500, 502, 503, 504})
MAX_REASON_CHARS = 300


class StreamInvalid(ValueError):
    """A line of the stream is not an event: nothing was sent."""


@dataclass(frozen=True)
class Delivery:
    line_number: int  # 1-based, as an editor shows it
    webhook_id: str
    body: bytes
    # What must be answered first: the customer's earlier events, and their referrer's.
    after: tuple[str, ...]


@dataclass(frozen=True)
class Failure:
    line_number: int
    webhook_id: str
    status: int | None  # None: no answer
    reason: str

    def __str__(self) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"line {self.line_number} ({self.webhook_id}): {answer}: {self.reason}"


@dataclass
class SendReport:
    total: int
    accepted: int = 0
    failures: list[Failure] = field(default_factory=list)


def read_stream(lines: Iterable[str]) -> tuple[list[Delivery], int]:
    """The deliveries of a stream's lines, and how many checkouts were skipped. Raises
    `StreamInvalid` naming the first line that is not an event (blank lines are skipped)."""
    deliveries: list[Delivery] = []
    checkouts = 0
    code_owners: dict[str, str] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        line = _event_line(number, text)
        data = line["data"]
        if line["type"] == CHECKOUT:
            checkouts += 1
            continue
        body = json.dumps(
            {"type": line["type"], "timestamp": line["timestamp"], "data": data},
            separators=(",", ":"),
        ).encode()
        webhook_id = line.get("webhook_id") or "sim-" + hashlib.sha256(body).hexdigest()[:24]
        customer = str(data.get("customer_id", ""))
        after = [customer]
        referrer = code_owners.get(str(data.get("referral_code")))
        if referrer is not None:
            after.append(referrer)
        if line["type"] == "customer.created" and data.get("own_referral_code"):
            code_owners[str(data["own_referral_code"])] = customer
        deliveries.append(Delivery(number, str(webhook_id), body, tuple(after)))
    return deliveries, checkouts


def _event_line(number: int, text: str) -> dict[str, Any]:
    try:
        line = json.loads(text)
    except json.JSONDecodeError as error:
        raise StreamInvalid(f"line {number} is not JSON: {error}") from error
    if not isinstance(line, dict) or not {"type", "timestamp", "data"} <= line.keys():
        raise StreamInvalid(f"line {number} is not an object with type, timestamp and data")
    if not isinstance(line["data"], dict):
        raise StreamInvalid(f"line {number}: data is not an object")
    return line


async def send_stream(
    deliveries: list[Delivery],
    *,
    url: str,
    merchant: str,
    secret: str,
    concurrency: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
    now_s: Callable[[], float] = time.time,
) -> SendReport:
    """Post every delivery (see the module's rule), calling `progress(done, total)` as each is
    answered for the last time."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, got {concurrency}")
    endpoint = f"{url.rstrip('/')}/webhooks/{quote(merchant, safe='')}"
    report = SendReport(total=len(deliveries))
    slots = asyncio.Semaphore(concurrency)
    busy: dict[str, asyncio.Task[None]] = {}  # each key's latest delivery in flight

    async def deliver(client: httpx.AsyncClient, delivery: Delivery) -> None:
        try:
            failure = await _post(client, endpoint, secret, delivery, now_s)
        finally:
            slots.release()
        if failure is None:
            report.accepted += 1
        else:
            report.failures.append(failure)
        progress(report.accepted + len(report.failures), report.total)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client,
        asyncio.TaskGroup() as group,
    ):
        for delivery in deliveries:
            before = [t for key in delivery.after if (t := busy.get(key)) and not t.done()]
            if before:
                await asyncio.wait(before)
            await slots.acquire()
            task = group.create_task(deliver(client, delivery))
            for key in delivery.after:
                busy[key] = task
            task.add_done_callback(partial(_forget, busy, delivery.after))
    report.failures.sort(key=lambda failure: failure.line_number)
    return report


def _forget(
    busy: dict[str, asyncio.Task[None]], keys: tuple[str, ...], done: asyncio.Task[None]
) -> None:
    for key in keys:
        if busy.get(key) is done:
            del busy[key]


async def _post(
    client: httpx.AsyncClient,
    endpoint: str,
    secret: str,
    delivery: Delivery,
    now_s: Callable[[], float],
) -> Failure | None:
    """None once the server accepts the delivery; the last failure if it never does."""
    wait_s = FIRST_RETRY_WAIT_S
    for attempt in range(1, MAX_TRIES + 1):
        headers = standard_webhook_headers(
            secret=secret,
            private_key=None,
            webhook_id=delivery.webhook_id,
            timestamp=int(now_s()),
            body=delivery.body,
        )
        try:
            answer = await client.post(endpoint, content=delivery.body, headers=headers)
        except httpx.HTTPError as error:
            failure = Failure(delivery.line_number, delivery.webhook_id, None, repr(error))
        else:
            if answer.is_success:
                return None
            failure = Failure(
                delivery.line_number, delivery.webhook_id, answer.status_code, _reason(answer)
            )
            if answer.status_code not in RETRIED_STATUSES:
                return failure
        if attempt < MAX_TRIES:
            await asyncio.sleep(wait_s)
            wait_s *= 2
    return failure


def _reason(answer: httpx.Response) -> str:
    """The server's `error` (code, message, field) if it sent one, else the body's start."""
    try:
        error = answer.json()["error"]
        said = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return answer.text[:MAX_REASON_CHARS]
    return said[:MAX_REASON_CHARS]
