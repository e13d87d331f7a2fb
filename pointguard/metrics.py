"""Prometheus metrics: every metric PointGuard exports is defined here, and `render` writes
them for `GET /metrics`. docs/operations.md lists them with their meaning.

What is measured where:
- ingest (`plugin/ingest.py`) counts webhooks accepted and replayed, by sender; the one error
  mapping (`http_errors.py`) counts webhooks rejected, by sender and `error.code`.
- workers report each inbox batch (`observe_worker_batch`): its seconds and its rows applied,
  dead-lettered and retried; the dispatcher counts delivery attempts by outcome and circuits
  opened.
- the database is read at scrape time for what is shared state rather than an event: the
  inbox's pending rows, the age of the oldest (lag) and its dead letters; the outbox's backlog
  and dead deliveries; open circuits. One query, the same truth whichever process answers.

Rules:
- The accept path pays about a microsecond: the label sets known in advance are bound once,
  here, so an increment is a locked float add (and, with several processes, an mmap write);
  nothing counted on a request touches the database.
- Every label is bounded: `sender` (four values), `code` (the codes of `errors.py`),
  `outcome`. There is no merchant label: merchants are many, and since a rejection for an
  unknown merchant would carry a caller-chosen id, anyone could create series by probing. Per
  merchant detail is in the logs (every line names its merchant) and in the database.
- Several processes (`serve --workers N`, `pointguard worker` beside it) count into one set of
  totals with prometheus_client's multiprocess mode: `metrics_dir.py` points
  `PROMETHEUS_MULTIPROC_DIR` at a folder before this module is imported, each process writes
  its values to memory-mapped files there, and `render` sums the files of every process, so
  any one process answers a scrape with the whole machine's totals. Counting in PostgreSQL
  would put a write on the hot path; a push gateway or a stats daemon is another moving part
  to run; one scrape target per process would need a port per worker and a Prometheus told of
  each. Without that variable (tests, a bare `uvicorn` run) values stay in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.metrics_dir import ENV

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SENDERS = ("standard", "shopify", "woocommerce", "saleor")
WORKER_OUTCOMES = ("applied", "dead", "retried")
DELIVERY_OUTCOMES = ("delivered", "failed", "dead")
# An inbox batch is up to 100 rows in one transaction: milliseconds when all is well.
BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The database gauges are read at most this often per process, however often /metrics is hit,
DATABASE_MAX_AGE_S = 1.0
# and a scrape gives up on them after this long (their query is cancelled).
DATABASE_TIMEOUT_S = 2.0
GAUGE_READ_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *db.DATABASE_UNAVAILABLE)

# Chosen when this module is imported, as prometheus_client chose its value class.
SHARED_DIR = os.environ.get(ENV) or None
REGISTRY = CollectorRegistry()

WEBHOOKS_ACCEPTED = Counter(
    "pointguard_webhooks_accepted",
    "Webhooks answered 202 (stored in the inbox now or before), by sender.",
    ["sender"],
    registry=REGISTRY,
)
WEBHOOKS_REPLAYED = Counter(
    "pointguard_webhooks_replayed",
    "Accepted webhooks whose id was already in the inbox (a sender's retry or duplicate).",
    ["sender"],
    registry=REGISTRY,
)
WEBHOOKS_REJECTED = Counter(
    "pointguard_webhooks_rejected",
    "Webhooks refused, by sender and error code (the `error.code` of the answer).",
    ["sender", "code"],
    registry=REGISTRY,
)
WORKER_BATCH_SECONDS = Histogram(
    "pointguard_worker_batch_seconds",
    "Time to claim, apply and commit one batch of one merchant's inbox rows.",
    buckets=BATCH_BUCKETS_S,
    registry=REGISTRY,
)
WORKER_ROWS = Counter(
    "pointguard_worker_rows",
    "Inbox rows processed by workers, by outcome (applied, dead-lettered, retried later).",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOX_ATTEMPTS = Counter(
    "pointguard_outbox_attempts",
    "Outbound webhook delivery attempts, by outcome: delivered, failed (to be retried), dead"
    " (failed the last attempt).",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOX_CIRCUITS_OPENED = Counter(
    "pointguard_outbox_circuits_opened",
    "Times a merchant endpoint's circuit breaker opened after consecutive failures.",
    registry=REGISTRY,
)

RETENTION_PURGED = Counter(
    "pointguard_retention_purged",
    "Rows deleted by retention, by table: inbox rows and outbox events past their days.",
    ["table"],
    registry=REGISTRY,
)

_ACCEPTED = {sender: WEBHOOKS_ACCEPTED.labels(sender) for sender in SENDERS}
_REPLAYED = {sender: WEBHOOKS_REPLAYED.labels(sender) for sender in SENDERS}
_ROWS = {outcome: WORKER_ROWS.labels(outcome) for outcome in WORKER_OUTCOMES}
_ATTEMPTS = {outcome: OUTBOX_ATTEMPTS.labels(outcome) for outcome in DELIVERY_OUTCOMES}


def count_accepted(sender: str, *, replayed: bool) -> None:
    """A webhook answered 202 (`replayed`: its id was in the inbox already)."""
    _ACCEPTED[sender].inc()
    if replayed:
        _REPLAYED[sender].inc()


def count_rejected(sender: str, code: str) -> None:
    """A webhook refused with `code`."""
    WEBHOOKS_REJECTED.labels(sender, code).inc()


def observe_worker_batch(seconds: float, applied: int, dead: int, retried: int) -> None:
    """One inbox batch: its time, claim to commit, and its rows by outcome. A batch that
    claimed nothing (another worker took the rows) is not observed."""
    if not (applied or dead or retried):
        return
    WORKER_BATCH_SECONDS.observe(seconds)
    for outcome, rows in (("applied", applied), ("dead", dead), ("retried", retried)):
        if rows:
            _ROWS[outcome].inc(rows)


def count_delivery(outcome: str) -> None:
    """One delivery attempt: `delivered`, `failed` (to be retried) or `dead`."""
    _ATTEMPTS[outcome].inc()


def count_purged(table: str, rows: int) -> None:
    """Rows of `table` (`inbox` or `outbox`) deleted by one retention purge."""
    if rows:
        RETENTION_PURGED.labels(table).inc(rows)


def count_circuit_opened() -> None:
    OUTBOX_CIRCUITS_OPENED.inc()


# One statement for every gauge. Each count runs on a partial index of its status, so a
# scrape costs in proportion to what is pending or dead, not to the tables' history. Events
# no dispatcher has taken yet count too, so a stopped dispatcher shows as a growing backlog.
SELECT_DATABASE_GAUGES = """
SELECT
    pending.inbox_pending,
    pending.inbox_lag_s,
    (SELECT count(*) FROM inbox WHERE status = 'dead') AS inbox_dead,
    (SELECT count(*) FROM outbox_deliveries WHERE status = 'pending')
    + (SELECT coalesce(sum(waiting), 0) FROM merchants m CROSS JOIN LATERAL (
           SELECT count(*) AS waiting FROM outbox o
           WHERE o.merchant_id = m.merchant_id AND NOT o.dispatched) w
       WHERE m.endpoint_url IS NOT NULL) AS outbox_backlog,
    (SELECT count(*) FROM outbox_deliveries WHERE status = 'dead') AS outbox_dead,
    (SELECT count(*) FROM outbox_circuits WHERE open_until > now()) AS circuits_open
FROM (
    SELECT count(*) AS inbox_pending,
           coalesce(extract(epoch FROM now() - min(received_at)), 0) AS inbox_lag_s
    FROM inbox WHERE status = 'pending'
) AS pending
"""

GAUGES = (
    ("inbox_pending", "pointguard_inbox_pending", "Inbox rows waiting to be applied."),
    (
        "inbox_lag_s",
        "pointguard_inbox_lag_seconds",
        "Age of the oldest inbox row waiting to be applied (0 when none waits).",
    ),
    ("inbox_dead", "pointguard_inbox_dead", "Dead-lettered inbox rows (pointguard inbox dead)."),
    (
        "outbox_backlog",
        "pointguard_outbox_backlog",
        "Outbox events not yet delivered to merchants with an endpoint (pending or retrying).",
    ),
    ("outbox_dead", "pointguard_outbox_dead", "Outbox deliveries that failed every attempt."),
    (
        "circuits_open",
        "pointguard_outbox_circuits_open",
        "Merchant endpoints whose circuit is open.",
    ),
)


class DatabaseGauges:
    """The gauges read from the database, cached for `max_age_s` so that scrapes (or anyone
    who can reach an unprotected /metrics) cost the database at most one query a second."""

    def __init__(self, engine: AsyncEngine, max_age_s: float = DATABASE_MAX_AGE_S) -> None:
        self._engine = engine
        self._max_age_s = max_age_s
        self._read_at = -max_age_s
        self._families: list[Metric] = []
        self._lock = asyncio.Lock()

    async def families(self) -> list[Metric]:
        async with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                self._families = await self._read()
                self._read_at = time.monotonic()
            return self._families

    async def _read(self) -> list[Metric]:
        ok = GaugeMetricFamily(
            "pointguard_metrics_database_ok",
            "1 when this scrape read the database gauges; 0 when their query failed or took"
            f" over {DATABASE_TIMEOUT_S:g} s (they are then absent).",
        )
        try:
            async with db.connection(self._engine) as pg:
                row = await pg.fetchrow(SELECT_DATABASE_GAUGES, timeout=DATABASE_TIMEOUT_S)
        except GAUGE_READ_ERRORS as error:
            log.warning("metrics database gauges unavailable", extra={"error": repr(error)})
            ok.add_metric([], 0)
            return [ok]
        ok.add_metric([], 1)
        return [
            ok,
            *(
                GaugeMetricFamily(name, text, value=float(row[column]))
                for column, name, text in GAUGES
            ),
        ]


class _Exposition:
    """What one scrape shows: the counted metrics, summed over every process when they are
    shared, and the database gauges."""

    def __init__(self, gauges: Sequence[Metric]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        if SHARED_DIR is not None:
            # prometheus_client.multiprocess has no annotations.
            yield from MultiProcessCollector(None, SHARED_DIR).collect()  # type: ignore[no-untyped-call]
        else:
            yield from REGISTRY.collect()
        yield from self._gauges


def render(gauges: Sequence[Metric]) -> bytes:
    """The Prometheus text format of every metric, with `gauges` (from `DatabaseGauges`)."""
    return generate_latest(_Exposition(gauges))
