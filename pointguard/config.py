"""The one settings object, read from the environment once.

Every knob PointGuard has is named here, so an operator finds them all in one file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(".pointguard")


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
    webhook_tolerance_s: int
    max_webhook_body_bytes: int

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / "pg"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=Path(env.get("POINTGUARD_DATA_DIR", str(DEFAULT_DATA_DIR))).absolute(),
        host=env.get("POINTGUARD_HOST", "127.0.0.1"),
        port=int(env.get("POINTGUARD_PORT", "8000")),
        db_pool_size=int(env.get("POINTGUARD_DB_POOL_SIZE", "10")),
        secret_key=env.get("POINTGUARD_SECRET_KEY") or None,
        webhook_tolerance_s=int(env.get("POINTGUARD_WEBHOOK_TOLERANCE_S", "300")),
        max_webhook_body_bytes=int(env.get("POINTGUARD_MAX_WEBHOOK_BODY_BYTES", str(256 * 1024))),
    )
