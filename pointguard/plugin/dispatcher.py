"""The outbox dispatcher: every outbox event reaches the merchant's endpoint, signed, at least
once, and never by two dispatchers at the same time.

Rules this module enforces:
- A delivery is a Standard Webhooks request: body `{"type", "timestamp", "data"}`, headers
  `webhook-id` (`{merchant}:{outbox_id}`, the same on every retry, so the receiver can
  dedupe), `webhook-timestamp` (the wall clock when the attempt is signed, which receivers
  check against their own clock) and `webhook-signature` with `v1` (HMAC-SHA256 under the
  merchant's outbound `whsec_` secret) and `v1a` (Ed25519 under the outbound private key).
- A 2xx answer delivers the event. Anything else (another status, a timeout, a refused
  connection) is retried after `RETRY_POLICY.delay_s(attempts)` (`retry.py`): 5 s doubling
  per attempt, capped at 10 h, with ±20% jitter so that a recovering endpoint is not hit by
  every retry at once.
  After `MAX_ATTEMPTS` failed attempts the delivery is dead: kept with its last error, never
  tried again.
- A delivery is bounded: `DELIVERY_DEADLINE_S` in all, from resolving the endpoint's name to
  the last byte read (a peer trickling a byte at a time cannot stretch it), at most
  `MAX_RESPONSE_BYTES` of the answer read, and only to public addresses (`outbound_http.py`).
- Claims are short transactions: lock the merchant's circuit row and the due delivery rows
  (`FOR UPDATE SKIP LOCKED`), push the rows' `next_attempt_at` out by `LEASE_S` (a lease: no
  other dispatcher picks them while they are in flight), commit; then send, with no
  transaction open; then record each outcome in its own transaction. A dispatcher that dies
  mid-flight leaves rows that come due again when the lease ends (at-least-once delivery).
  A window of sends starts only if its deadline ends inside the lease, so no event is sent
  by a second dispatcher while the first is still sending it.
- Merchants are served concurrently (`MAX_CONCURRENT_MERCHANTS`), each by its own task, so a
  slow endpoint delays its own merchant only; a merchant's deliveries go out in windows of
  `MAX_IN_FLIGHT_PER_MERCHANT`, which is the circuit's threshold, so a dead endpoint opens
  its circuit after one deadline.
- Circuit breaker per endpoint: after `CIRCUIT_THRESHOLD` consecutive failed attempts, the
  merchant's deliveries stop for `COOL_DOWN_S` (the batch in flight is released untried);
  then a single delivery is tried, and its success closes the circuit, its failure opens it
  for another cool-down. Attempts skipped while the circuit is open do not count.
- A merchant without an endpoint gets nothing delivered; its outbox rows wait (for the
  outbox's retention period: `plugin/retention.py`). The endpoint and the signing keys come
  from the process's `CredentialCache`, read before the claim's transaction, so a new
  endpoint or key is used within its TTL, and a claim decrypts nothing.
- Every statement names one merchant; a merchant's events are sent in `outbox_id` order
  within a batch, a window at a time (a failed one does not hold the others back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db, logs, metrics
from pointguard.clock import wall_clock
from pointguard.db import PgConnection
from pointguard.errors import OutboundRequestFailed, PointGuardError
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.merchants import MerchantCredentials
from pointguard.plugin.outbound_http import OutboundClient
from pointguard.plugin.retry import RetryPolicy
from pointguard.plugin.signatures import standard_webhook_headers

log = logging.getLogger(__name__)

BATCH_SIZE = 50
MAX_ATTEMPTS = 15  # 5 s … 10 h between tries: about 21 h from first try to dead letter
FIRST_RETRY_S = 5
MAX_RETRY_S = 10 * 60 * 60
JITTER = 0.2
RETRY_POLICY = RetryPolicy(first_s=FIRST_RETRY_S, max_s=MAX_RETRY_S, jitter=JITTER)
CIRCUIT_THRESHOLD = 5
COOL_DOWN_S = 60
# One delivery, from resolving the endpoint's name to the last byte of the answer we read.
DELIVERY_DEADLINE_S = 10.0
MAX_RESPONSE_BYTES = 4 * 1024  # of an answer's body: only its status counts
# A window of a merchant's deliveries is sent at once: no more than the circuit's threshold,
# so a dead endpoint gets that many attempts, which wait out one deadline together, and its
# circuit is open after one deadline rather than after five.
MAX_IN_FLIGHT_PER_MERCHANT = CIRCUIT_THRESHOLD
MAX_CONCURRENT_MERCHANTS = 16
WINDOWS_PER_BATCH = math.ceil(BATCH_SIZE / MAX_IN_FLIGHT_PER_MERCHANT)
LEASE_MARGIN_S = 60  # recording outcomes, a slow database
# Long enough for every window of a batch to run to its deadline, one after another.
LEASE_S = int(WINDOWS_PER_BATCH * DELIVERY_DEADLINE_S) + LEASE_MARGIN_S
MAX_ERROR_CHARS = 500
IDLE_SLEEP_S = 1.0

# A delivery still being sent when its lease ends would be claimed and sent again by another
# dispatcher: a window starts only if its deadline ends inside the lease (`_deliver_merchant`).
assert DELIVERY_DEADLINE_S + LEASE_MARGIN_S <= LEASE_S
assert MAX_IN_FLIGHT_PER_MERCHANT <= CIRCUIT_THRESHOLD

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

# (url, body, headers) -> HTTP status; raises httpx.HTTPError or OSError when no answer came.
Send = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]

# Merchants with an endpoint and something to do: events no dispatcher has taken, or
# deliveries due. A probe of two partial indexes per merchant, in one statement, so an idle
# pass costs one query however many merchants there are (not four statements for each).
SELECT_MERCHANTS_WITH_DELIVERIES = """
SELECT m.merchant_id FROM merchants m
WHERE m.endpoint_url IS NOT NULL AND (
    EXISTS (SELECT 1 FROM outbox o WHERE o.merchant_id = m.merchant_id AND NOT o.dispatched)
    OR EXISTS (SELECT 1 FROM outbox_deliveries d
               WHERE d.merchant_id = m.merchant_id AND d.status = 'pending'
                 AND d.next_attempt_at <= $1))
ORDER BY m.merchant_id
"""

# Outbox ids come from one identity but commit out of order, so a high-water mark could skip
# a late commit: each event says instead whether a dispatcher has taken it, and the events not
# yet taken are in a partial index, so a pass reads only what is new (migration 0011). SKIP
# LOCKED: racing dispatchers take different events; the delivery's key makes a repeat harmless.
INSERT_DELIVERIES_OF_NEW_EVENTS = """
WITH taken AS (
    SELECT outbox_id FROM outbox
    WHERE merchant_id = $1 AND NOT dispatched
    ORDER BY outbox_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE outbox o SET dispatched = true FROM taken
    WHERE o.merchant_id = $1 AND o.outbox_id = taken.outbox_id
    RETURNING o.outbox_id
)
INSERT INTO outbox_deliveries (merchant_id, outbox_id, next_attempt_at)
SELECT $1, outbox_id, $2 FROM marked
ON CONFLICT DO NOTHING
"""

INSERT_CIRCUIT = """
INSERT INTO outbox_circuits (merchant_id) VALUES ($1) ON CONFLICT (merchant_id) DO NOTHING
"""

# SKIP LOCKED: another dispatcher is claiming this merchant's rows right now; skip it this pass.
LOCK_CIRCUIT = """
SELECT open_until FROM outbox_circuits WHERE merchant_id = $1 FOR UPDATE SKIP LOCKED
"""

SET_CIRCUIT_OPEN_UNTIL = "UPDATE outbox_circuits SET open_until = $2 WHERE merchant_id = $1"

CLAIM_DUE_DELIVERIES = """
SELECT d.outbox_id, d.attempts, o.event_type, o.payload::text AS payload, o.created_at
FROM outbox_deliveries d
JOIN outbox o ON o.merchant_id = d.merchant_id AND o.outbox_id = d.outbox_id
WHERE d.merchant_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
ORDER BY d.outbox_id
LIMIT $3
FOR UPDATE OF d SKIP LOCKED
"""

SET_DELIVERIES_NEXT_ATTEMPT = """
UPDATE outbox_deliveries SET next_attempt_at = $3
WHERE merchant_id = $1 AND outbox_id = ANY($2::bigint[]) AND status = 'pending'
"""

MARK_DELIVERED = """
UPDATE outbox_deliveries
SET status = 'delivered', attempts = attempts + 1, last_status = $3, last_error = NULL,
    delivered_at = $4
WHERE merchant_id = $1 AND outbox_id = $2
"""

MARK_DELIVERY_FAILED = """
UPDATE outbox_deliveries
SET status = $3, attempts = attempts + 1, last_status = $4, last_error = $5, next_attempt_at = $6
WHERE merchant_id = $1 AND outbox_id = $2
"""

# Only a circuit that is not closed already is written: most deliveries succeed on a closed one.
MARK_CIRCUIT_CLOSED = """
UPDATE outbox_circuits SET consecutive_failures = 0, open_until = NULL
WHERE merchant_id = $1 AND (consecutive_failures <> 0 OR open_until IS NOT NULL)
"""

# Returns whether the circuit is open now: this failure reached the threshold (or was the
# half-open trial, which is already past it).
COUNT_CIRCUIT_FAILURE = """
UPDATE outbox_circuits
SET consecutive_failures = consecutive_failures + 1,
    open_until = CASE WHEN consecutive_failures + 1 >= $2 THEN $3 ELSE open_until END
WHERE merchant_id = $1
RETURNING consecutive_failures >= $2 AS open
"""


class DeliveryFailure(NamedTuple):
    """What `MARK_DELIVERY_FAILED` takes, in `$1..$6` order."""

    merchant_id: str
    outbox_id: int
    status: str  # pending (to be retried) or dead
    last_status: int | None  # the endpoint's HTTP answer; None when none came
    last_error: str
    next_attempt_at: datetime


@dataclass
class DispatchResult:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    circuit_open: int = 0  # merchants skipped, or stopped mid-batch, by an open circuit

    def add(self, other: DispatchResult) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.circuit_open += other.circuit_open

    def count(self, outcome: str) -> None:
        if outcome == DELIVERED:
            self.delivered += 1
        elif outcome == DEAD:
            self.dead += 1
        else:
            self.retried += 1

    @property
    def busy(self) -> bool:
        return bool(self.delivered or self.retried or self.dead)


@dataclass(frozen=True)
class _Claim:
    rows: Sequence[Any]
    circuit_open: bool = False


@dataclass(frozen=True)
class _Work:
    """What every merchant's batch in one call shares."""

    engine: AsyncEngine
    credentials: CredentialCache
    now: datetime | None
    send: Send
    limit: int
    deadline_s: float


@dataclass(frozen=True)
class _Endpoint:
    """Where a merchant's deliveries go, and the keys that sign them."""

    url: str
    credentials: MerchantCredentials


def delivery_body(event_type: str, created_at: datetime, payload: Any) -> bytes:
    """The Standard Webhooks body of one outbox event (timestamp in RFC 3339, UTC)."""
    timestamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document = {"type": event_type, "timestamp": timestamp, "data": payload}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_id(merchant_id: str, outbox_id: int) -> str:
    return f"{merchant_id}:{outbox_id}"


async def deliver_due(
    engine: AsyncEngine,
    credentials: CredentialCache,
    *,
    now: datetime | None = None,
    send: Send | None = None,
    limit: int = BATCH_SIZE,
    deadline_s: float = DELIVERY_DEADLINE_S,
) -> DispatchResult:
    """One batch of due deliveries for every merchant with an endpoint and work, up to
    `MAX_CONCURRENT_MERCHANTS` merchants at a time, so a slow endpoint holds up its own
    merchant only. `now` drives the schedule (backoff, leases, cool-downs); `send` replaces
    the HTTP client in tests, and `deadline_s` shortens each delivery's deadline."""
    merchants = await _merchants_with_work(engine, now)
    slots = asyncio.Semaphore(MAX_CONCURRENT_MERCHANTS)
    async with _sender(send, deadline_s) as send_one:
        work = _Work(engine, credentials, now, send_one, limit, deadline_s)

        async def one(merchant_id: str) -> DispatchResult:
            async with slots:
                return await _deliver_logged(work, merchant_id)

        # Every merchant's batch ends (and records its outcomes) before a failure is raised.
        done = await asyncio.gather(*map(one, merchants), return_exceptions=True)
    total = DispatchResult()
    for result in done:
        if isinstance(result, BaseException):
            raise result
        total.add(result)
    return total


async def deliver_merchant(
    engine: AsyncEngine,
    credentials: CredentialCache,
    merchant_id: str,
    *,
    now: datetime | None = None,
    send: Send | None = None,
    limit: int = BATCH_SIZE,
    deadline_s: float = DELIVERY_DEADLINE_S,
) -> DispatchResult:
    """One batch of one merchant's due deliveries (see `deliver_due`)."""
    async with _sender(send, deadline_s) as send_one:
        work = _Work(engine, credentials, now, send_one, limit, deadline_s)
        with logs.log_fields(merchant_id=merchant_id):
            return await _deliver_merchant(work, merchant_id)


async def dispatch_forever(
    engine: AsyncEngine, credentials: CredentialCache, *, deadline_s: float = DELIVERY_DEADLINE_S
) -> None:
    """The dispatcher loop of `pointguard serve`. Every `IDLE_SLEEP_S` it looks for merchants
    with work and gives each that has no task yet its own task, which drains the merchant's
    due deliveries batch after batch; at most `MAX_CONCURRENT_MERCHANTS` run at once. A slow
    or dead endpoint thus holds up its own task only, never another merchant's deliveries nor
    the loop. One HTTP client serves every task, so connections to merchants' endpoints are
    kept alive between batches (and an idle pass costs no client set-up)."""
    running: dict[str, asyncio.Task[None]] = {}

    async with _sender(None, deadline_s) as send:
        work = _Work(engine, credentials, None, send, BATCH_SIZE, deadline_s)

        async def drain(merchant_id: str) -> None:
            while (await _deliver_logged(work, merchant_id)).busy:
                pass

        try:
            while True:
                for merchant_id, task in list(running.items()):
                    if task.done():
                        del running[merchant_id]
                        _report_failure(task)
                try:
                    merchants = await _merchants_with_work(engine, None)
                except db.DATABASE_UNAVAILABLE as error:
                    log.error("outbox dispatch pass failed error=%r", error)
                    merchants = []
                for merchant_id in merchants:
                    if merchant_id not in running and len(running) < MAX_CONCURRENT_MERCHANTS:
                        running[merchant_id] = asyncio.create_task(drain(merchant_id))
                await asyncio.sleep(IDLE_SLEEP_S)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)


def _report_failure(task: asyncio.Task[None]) -> None:
    """Log why a merchant's task ended early (the database went away); the next pass starts
    it again."""
    if not task.cancelled() and task.exception() is not None:
        log.error("outbox dispatch failed error=%r", task.exception())


async def _merchants_with_work(engine: AsyncEngine, now: datetime | None) -> list[str]:
    async with db.connection(engine) as pg:
        rows = await pg.fetch(SELECT_MERCHANTS_WITH_DELIVERIES, now or wall_clock())
    return [r["merchant_id"] for r in rows]


async def _deliver_logged(work: _Work, merchant_id: str) -> DispatchResult:
    """`_deliver_merchant` under the merchant's log fields; unreadable credentials stop this
    merchant only."""
    with logs.log_fields(merchant_id=merchant_id):
        try:
            return await _deliver_merchant(work, merchant_id)
        except PointGuardError as error:
            log.error("outbox dispatch failed", extra={"code": error.code})
            return DispatchResult()


@contextlib.asynccontextmanager
async def _sender(send: Send | None, deadline_s: float) -> AsyncIterator[Send]:
    """The given `send`, or a POST through an `OutboundClient` for as long as the block runs:
    checked addresses, `deadline_s` in all, at most `MAX_RESPONSE_BYTES` of the answer read."""
    if not 0 < deadline_s <= DELIVERY_DEADLINE_S:  # longer could outlive the lease
        raise ValueError(f"deadline_s must be in (0, {DELIVERY_DEADLINE_S:g}], got {deadline_s}")
    if send is not None:
        yield send
        return
    connections = MAX_CONCURRENT_MERCHANTS * MAX_IN_FLIGHT_PER_MERCHANT
    async with OutboundClient(max_connections=connections) as client:

        async def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
            answer = await client.request(
                "POST",
                url,
                content=body,
                headers=headers,
                deadline_s=deadline_s,
                max_body_bytes=MAX_RESPONSE_BYTES,
            )
            return answer.status

        yield post


async def _deliver_merchant(work: _Work, merchant_id: str) -> DispatchResult:
    """Claim a batch and send it window by window (`MAX_IN_FLIGHT_PER_MERCHANT` at once),
    recording outcomes in `outbox_id` order; stop when the circuit opens, or when a window
    could outlast the lease, handing the rest back untried."""
    engine, at = work.engine, work.now or wall_clock()
    result = DispatchResult()
    found = await work.credentials.load(engine, merchant_id)
    if found is None or found.endpoint_url is None:
        return result
    endpoint = _Endpoint(found.endpoint_url, found)
    claim = await db.in_transaction(engine, lambda pg: _claim(pg, merchant_id, at, work.limit))
    if claim is None:
        return result
    if claim.circuit_open:
        result.circuit_open = 1
        return result
    lease_ends_s = time.monotonic() + LEASE_S - LEASE_MARGIN_S
    rows = list(claim.rows)
    for start in range(0, len(rows), MAX_IN_FLIGHT_PER_MERCHANT):
        rest = [r["outbox_id"] for r in rows[start:]]
        if time.monotonic() + work.deadline_s > lease_ends_s:
            await db.run_in_transaction(engine, _release, merchant_id, rest, at)
            log.warning("webhook lease ending", extra={"released": len(rest)})
            break
        window = rows[start : start + MAX_IN_FLIGHT_PER_MERCHANT]
        answers = await asyncio.gather(
            *(_attempt(endpoint, merchant_id, r, work.send) for r in window)
        )
        circuit_open = False
        for row, (status, error) in zip(window, answers, strict=True):
            circuit_open = await _count_attempt(engine, merchant_id, row, status, error, at, result)
        if circuit_open:
            rest = rest[len(window) :]
            if rest:
                await db.run_in_transaction(engine, _release, merchant_id, rest, at)
            metrics.count_circuit_opened()
            log.warning("webhook circuit open", extra={"released": len(rest)})
            result.circuit_open = 1
            break
    return result


async def _count_attempt(
    engine: AsyncEngine,
    merchant_id: str,
    row: Any,
    status: int | None,
    error: str | None,
    at: datetime,
    result: DispatchResult,
) -> bool:
    """Record, count and log one attempt; whether the merchant's circuit is open after it."""
    attempts = row["attempts"] + 1
    outcome, circuit_open = await db.run_in_transaction(
        engine, _record, merchant_id, row["outbox_id"], attempts, status, error, at
    )
    result.count(outcome)
    attempt_outcome = "failed" if outcome == PENDING else outcome  # failed, to be retried
    metrics.count_delivery(attempt_outcome)
    log.info(
        "webhook delivery",
        extra={
            "outbox_id": row["outbox_id"],
            "attempt": attempts,
            "http_status": status,
            "outcome": attempt_outcome,
        },
    )
    return bool(circuit_open)


async def _claim(pg: PgConnection, merchant_id: str, now: datetime, limit: int) -> _Claim | None:
    await pg.execute(INSERT_DELIVERIES_OF_NEW_EVENTS, merchant_id, now, limit)
    await pg.execute(INSERT_CIRCUIT, merchant_id)
    circuit = await pg.fetchrow(LOCK_CIRCUIT, merchant_id)
    if circuit is None:
        return None
    open_until = circuit["open_until"]
    half_open = open_until is not None
    if half_open and open_until > now:
        return _Claim((), circuit_open=True)
    rows = await pg.fetch(CLAIM_DUE_DELIVERIES, merchant_id, now, 1 if half_open else limit)
    if rows:
        lease_end = now + timedelta(seconds=LEASE_S)
        ids = [r["outbox_id"] for r in rows]
        await pg.execute(SET_DELIVERIES_NEXT_ATTEMPT, merchant_id, ids, lease_end)
        if half_open:  # the trial is in flight: others keep away until it is recorded
            await pg.execute(SET_CIRCUIT_OPEN_UNTIL, merchant_id, lease_end)
    return _Claim(rows)


async def _attempt(
    endpoint: _Endpoint, merchant_id: str, row: Any, send: Send
) -> tuple[int | None, str | None]:
    """Send one delivery: (HTTP status or None, error text or None for a 2xx)."""
    body = delivery_body(row["event_type"], row["created_at"], json.loads(row["payload"]))
    message_id = webhook_id(merchant_id, row["outbox_id"])
    timestamp = int(wall_clock().timestamp())
    headers = standard_webhook_headers(
        secret=endpoint.credentials.outbound_secret,
        private_key=endpoint.credentials.outbound_private_key,
        webhook_id=message_id,
        timestamp=timestamp,
        body=body,
    )
    try:
        status = await send(endpoint.url, body, headers)
    except (httpx.HTTPError, OSError, OutboundRequestFailed) as error:
        return None, f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    if 200 <= status < 300:
        return status, None
    return status, f"endpoint answered HTTP {status}"


async def _record(
    pg: PgConnection,
    merchant_id: str,
    outbox_id: int,
    attempts: int,
    status: int | None,
    error: str | None,
    now: datetime,
) -> tuple[str, bool]:
    """Store one attempt's outcome and update the circuit: (result field, circuit open now)."""
    if error is None:
        await pg.execute(MARK_DELIVERED, merchant_id, outbox_id, status, now)
        await pg.execute(MARK_CIRCUIT_CLOSED, merchant_id)
        return DELIVERED, False
    dead = attempts >= MAX_ATTEMPTS
    next_at = RETRY_POLICY.next_attempt_at(now, attempts)
    failure = DeliveryFailure(
        merchant_id=merchant_id,
        outbox_id=outbox_id,
        status=DEAD if dead else PENDING,
        last_status=status,
        last_error=error,
        next_attempt_at=next_at,
    )
    await pg.execute(MARK_DELIVERY_FAILED, *failure)
    opened = await pg.fetchval(
        COUNT_CIRCUIT_FAILURE, merchant_id, CIRCUIT_THRESHOLD, now + timedelta(seconds=COOL_DOWN_S)
    )
    return (DEAD if dead else PENDING), bool(opened)


async def _release(
    pg: PgConnection, merchant_id: str, outbox_ids: list[int], now: datetime
) -> None:
    """Hand claimed rows back untried (the circuit opened before their turn)."""
    await pg.execute(SET_DELIVERIES_NEXT_ATTEMPT, merchant_id, outbox_ids, now)
