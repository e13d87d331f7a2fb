"""The baseline that `bench/ingest.py` measures PointGuard against, in the same run.

The least a webhook endpoint can do and still be safe to acknowledge: a minimal Starlette app
that verifies the Standard Webhooks signature (`v1`, HMAC-SHA256, with the merchant's secret,
through PointGuard's own verifier so that both pay the same for it), INSERTs the body as one
row in a transaction of its own (a commit per request), and answers 202. Nothing is applied,
grouped, deduplicated beyond the primary key, logged or counted. PointGuard does all of that
and more per webhook, so `accepted_over_naive` near 1 says its extra work costs nothing.

Served by the same uvicorn settings as `pointguard serve` (`pointguard.serving.run`, W
processes, uvloop and httptools) on a pool of the same size, from a process started by the
bench: `python bench/naive_ingest.py --port P --workers W` with NAIVE_DATABASE_URL (libpq form)
and NAIVE_MERCHANTS_FILE (the bench's merchants and secrets) in the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from baseline_server import serve_baseline
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointguard.config import load_settings
from pointguard.errors import PointGuardError
from pointguard.plugin.signatures import verify_standard_webhook

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS naive_inbox (
    merchant_id text NOT NULL,
    webhook_id  text NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, webhook_id)
)
"""
INSERT_ROW = "INSERT INTO naive_inbox (merchant_id, webhook_id, payload) VALUES ($1, $2, $3)"


def create_app() -> Starlette:
    """The app, from the environment (each uvicorn process makes its own)."""
    merchants = json.loads(Path(os.environ["NAIVE_MERCHANTS_FILE"]).read_text())
    secrets = {m["merchant_id"]: (m["secret"],) for m in merchants}
    pool_size = load_settings().db_pool_size
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(
            os.environ["NAIVE_DATABASE_URL"], min_size=1, max_size=pool_size
        )
        yield
        await state["pool"].close()

    async def receive(request: Request) -> Response:
        merchant_id = request.path_params["merchant_id"]
        body = await request.body()
        try:
            verify_standard_webhook(
                secrets=secrets.get(merchant_id, ()),
                public_keys=(),
                webhook_id=request.headers.get("webhook-id", ""),
                timestamp=request.headers.get("webhook-timestamp", ""),
                signature_header=request.headers.get("webhook-signature", ""),
                body=body,
                now=datetime.now(UTC),
            )
        except (PointGuardError, ValueError):
            return Response(status_code=401)
        async with state["pool"].acquire() as pg:
            await pg.execute(INSERT_ROW, merchant_id, request.headers["webhook-id"], body.decode())
        return Response(status_code=202)

    routes = [Route("/webhooks/{merchant_id}", receive, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def create_table(pg: Any) -> None:
    await pg.execute(CREATE_TABLE)


if __name__ == "__main__":
    serve_baseline("naive_ingest:create_app", __doc__.splitlines()[0])
