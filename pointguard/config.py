"""The one settings object, read from the environment once.

Every knob PointGuard has is named here, so an operator finds them all in one file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pointguard.clock import Clock, wall_clock

DEFAULT_DATA_DIR = Path(".pointguard")
DEFAULT_HOST = "127.0.0.1"  # this machine only, until an operator chooses to listen wider
DEFAULT_PORT = 8000
MAX_RETENTION_DAYS = 36_500  # a hundred years: past this, say 0 (keep forever)
# A webhook body is at most a few hundred KiB from a storefront's server: ten seconds is far
# more than it needs, and bounds how long a sender trickling bytes holds a connection.
DEFAULT_BODY_READ_TIMEOUT_S = 10.0
# Connections (and requests in progress) one server process takes before answering 503 at once.
DEFAULT_MAX_CONNECTIONS = 1000
# A customer's page makes a few calls; 20 a second leaves any person alone and stops a
# frontend's retry loop. A storefront key carries every checkout of a shop.
DEFAULT_GRAPHQL_CUSTOMER_RATE_PER_S = 20.0
DEFAULT_GRAPHQL_KEY_RATE_PER_S = 500.0
ALLOW_LOOPBACK_ENDPOINTS = "POINTGUARD_ALLOW_LOOPBACK_ENDPOINTS"
Number = TypeVar("Number", int, float)
FLAG_VALUES = {
    **dict.fromkeys(("", "0", "false", "no"), False),
    **dict.fromkeys(("1", "true", "yes"), True),
}


@dataclass(frozen=True)
class Settings:
    """Runtime configuration.

    `database_url` unset means "start the embedded PostgreSQL in `data_dir / 'pg'`", so a
    fresh machine runs PointGuard with nothing installed by hand.
    """

    database_url: str | None
    data_dir: Path
    host: str
    port: int
    db_pool_size: int
    secret_key: str | None  # base64 of 32 bytes for AES-GCM; unset: a key kept in data_dir
    # Old keys (base64, comma-separated) that still open values during `pointguard keys rotate`.
    old_secret_keys: tuple[str, ...]
    webhook_tolerance_s: int
    max_webhook_body_bytes: int
    jwks_refetch_interval_s: float  # a storefront's JWKS is fetched at most this often
    log_format: str  # "json" (one object per line) or "text" (key=value)
    log_level: str  # debug, info, warning or error; debug also logs each accepted webhook
    metrics_token: str | None  # unset: GET /metrics is open; set: it needs "Bearer <token>"
    metrics_dir: Path | None  # where processes pool metric values; unset: data_dir / "metrics"
    inbox_retention_days: int  # applied and ignored webhooks are deleted after this; 0: never
    outbox_retention_days: int  # events done with (delivered, or no endpoint) too; 0: never
    # Whether merchants' endpoints and storefronts' JWKS may be on this machine (127.0.0.1,
    # ::1, localhost): for tests and local trials only. Private, link-local, multicast and
    # reserved addresses are refused whatever this says (`plugin/outbound_http.py`).
    allow_loopback_endpoints: bool = False
    body_read_timeout_s: float = DEFAULT_BODY_READ_TIMEOUT_S  # a request body arrives within
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per `serve` process (uvicorn's limit)
    # Whether the inbox workers apply events through the fraud guard. `POINTGUARD_FRAUD_GUARD=off`
    # is a switch for measuring what the guard costs, or for an emergency: points are then
    # released unscreened (no identity links, no decisions, no holds), and the workers say so
    # loudly when they start. A merchant turns its holds off in its program instead.
    fraud_guard: bool = True
    # Production mode: no GraphiQL page and no schema introspection at `/graphql`.
    production: bool = False
    # The installation operator's bearer key at `/graphql`: it may create merchants, and
    # reaches no merchant's data. Unset: merchants are created with the CLI only.
    operator_key: str | None = None
    # How many GraphQL requests a second each credential may make in each server process, in
    # bursts of twice that: a customer (one member's tokens), and an API key (a storefront
    # key carries all of a shop's checkouts).
    graphql_customer_rate_per_s: float = DEFAULT_GRAPHQL_CUSTOMER_RATE_PER_S
    graphql_key_rate_per_s: float = DEFAULT_GRAPHQL_KEY_RATE_PER_S
    # What the server's loops and the CLI take as now (`clock.py`); a simulation passes its own.
    clock: Clock = wall_clock

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def shared_metrics_dir(self) -> Path:
        return self.metrics_dir or self.data_dir / "metrics"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=Path(env.get("POINTGUARD_DATA_DIR", str(DEFAULT_DATA_DIR))).absolute(),
        host=env.get("POINTGUARD_HOST", DEFAULT_HOST),
        port=int(env.get("POINTGUARD_PORT", str(DEFAULT_PORT))),
        db_pool_size=int(env.get("POINTGUARD_DB_POOL_SIZE", "10")),
        secret_key=env.get("POINTGUARD_SECRET_KEY") or None,
        old_secret_keys=tuple(
            k.strip() for k in env.get("POINTGUARD_SECRET_KEYS", "").split(",") if k.strip()
        ),
        webhook_tolerance_s=int(env.get("POINTGUARD_WEBHOOK_TOLERANCE_S", "300")),
        max_webhook_body_bytes=int(env.get("POINTGUARD_MAX_WEBHOOK_BODY_BYTES", str(256 * 1024))),
        jwks_refetch_interval_s=float(env.get("POINTGUARD_JWKS_REFETCH_INTERVAL_S", "30")),
        log_format=_one_of(env, "POINTGUARD_LOG_FORMAT", ("json", "text")),
        log_level=_one_of(env, "POINTGUARD_LOG_LEVEL", ("info", "debug", "warning", "error")),
        metrics_token=env.get("POINTGUARD_METRICS_TOKEN") or None,
        metrics_dir=Path(env["POINTGUARD_METRICS_DIR"]).absolute()
        if env.get("POINTGUARD_METRICS_DIR")
        else None,
        inbox_retention_days=_days(env, "POINTGUARD_INBOX_RETENTION_DAYS", 30),
        outbox_retention_days=_days(env, "POINTGUARD_OUTBOX_RETENTION_DAYS", 30),
        allow_loopback_endpoints=_flag(env, ALLOW_LOOPBACK_ENDPOINTS),
        body_read_timeout_s=_positive(
            env, "POINTGUARD_BODY_READ_TIMEOUT_S", DEFAULT_BODY_READ_TIMEOUT_S, float
        ),
        max_connections=_positive(env, "POINTGUARD_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, int),
        fraud_guard=_one_of(env, "POINTGUARD_FRAUD_GUARD", ("on", "off")) == "on",
        production=_flag(env, "POINTGUARD_PRODUCTION"),
        operator_key=env.get("POINTGUARD_OPERATOR_KEY") or None,
        graphql_customer_rate_per_s=_positive(
            env,
            "POINTGUARD_GRAPHQL_CUSTOMER_RATE_PER_S",
            DEFAULT_GRAPHQL_CUSTOMER_RATE_PER_S,
            float,
        ),
        graphql_key_rate_per_s=_positive(
            env, "POINTGUARD_GRAPHQL_KEY_RATE_PER_S", DEFAULT_GRAPHQL_KEY_RATE_PER_S, float
        ),
    )


def _positive(env: dict[str, str], name: str, default: Number, kind: type[Number]) -> Number:
    """`env[name]` as a number above 0 (`kind`); `default` if unset. A bound of 0 or less
    would refuse everything, or nothing."""
    value = env.get(name)
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = kind(0)
    if not number > 0:
        raise ValueError(f"{name} must be a number above 0, not {value!r}")
    return number


def _one_of(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    """`env[name]` (any case) if it is one of `choices`; the first choice if unset."""
    value = env.get(name, choices[0]).lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    """`env[name]` as a yes/no switch, off when unset; a typo is an error, not silently off."""
    value = env.get(name, "").strip().lower()
    if value not in FLAG_VALUES:
        raise ValueError(f"{name} must be one of {', '.join(sorted(FLAG_VALUES))}, not {value!r}")
    return FLAG_VALUES[value]


def _days(env: dict[str, str], name: str, default: int) -> int:
    """`env[name]` as a whole number of days from 0 to `MAX_RETENTION_DAYS`; `default` if
    unset."""
    value = env.get(name, str(default))
    try:
        days = int(value)
    except ValueError:
        days = -1
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"{name} must be a whole number of days from 0 (keep forever) to"
            f" {MAX_RETENTION_DAYS}, not {value!r}"
        )
    return days
