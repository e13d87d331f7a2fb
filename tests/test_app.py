"""The HTTP app's health endpoints, with its real lifespan (engine, migrations)."""

import base64

import httpx

from pointguard.app import create_app
from pointguard.config import load_settings


def settings_for(database_url):
    return load_settings(
        {
            "DATABASE_URL": database_url,
            "POINTGUARD_SECRET_KEY": base64.b64encode(bytes(32)).decode(),
        }
    )


async def test_healthz_and_readyz(database_url):
    app = create_app(settings_for(database_url), upkeep=False, workers=False, dispatch=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
            live = await client.get("/healthz")
            ready = await client.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_readyz_says_unavailable_when_the_database_is_unreachable(database_url):
    app = create_app(settings_for(database_url), upkeep=False, workers=False, dispatch=False)
    async with app.router.lifespan_context(app):
        await app.state.engine.dispose()
        from pointguard import db

        app.state.engine = db.create_engine("postgresql://nobody@127.0.0.1:1/none")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
