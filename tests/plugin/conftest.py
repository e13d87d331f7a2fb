"""A running app (webhook routes, no background loops) with one merchant and its program."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import httpx
import pytest

from pointguard.app import create_app
from pointguard.config import load_settings
from pointguard.plugin.merchants import create_merchant
from pointguard.program.store import save_program
from pointguard.program.validation import parse_program

SECRET_KEY = base64.b64encode(os.urandom(32)).decode()
PROGRAM = """
name = "Hooks"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
"""


@pytest.fixture
def secret_key() -> bytes:
    """The key that encrypts merchants' secrets in these tests."""
    return base64.b64decode(SECRET_KEY)


@pytest.fixture
async def shop(database_url, run):
    """`(client, merchant)`: an HTTP client on the app, and a merchant with a program."""
    app = create_app(
        load_settings({"DATABASE_URL": database_url, "POINTGUARD_SECRET_KEY": SECRET_KEY}),
        upkeep=False,
        workers=False,
        dispatch=False,
    )
    async with app.router.lifespan_context(app):
        merchant = await run(create_merchant, app.state.secret_key, "Hook Shop")
        await run(
            save_program,
            merchant.merchant_id,
            parse_program(PROGRAM),
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
            yield client, merchant
