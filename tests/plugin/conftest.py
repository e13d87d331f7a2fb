"""A running app (webhook routes, no background loops) with one merchant and its program, a
merchant's endpoint: a real HTTP receiver on 127.0.0.1 for outbound deliveries, and a
Saleor-style storefront's signing keys with its JWKS served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pointguard.app import create_app
from pointguard.config import ALLOW_LOOPBACK_ENDPOINTS, load_settings
from pointguard.plugin.merchants import NewMerchant, create_merchant
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program

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


async def merchant_with_program(run, key: bytes, name: str) -> NewMerchant:
    """A new merchant with the test PROGRAM in force since 2020."""
    merchant: NewMerchant = await run(create_merchant, key, name)
    await run(
        save_program,
        merchant.merchant_id,
        parse_program(PROGRAM),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    return merchant


@pytest.fixture
async def shop(database_url, run):
    """`(client, merchant)`: an HTTP client on the app, and a merchant with a program."""
    settings = {
        "DATABASE_URL": database_url,
        "POINTGUARD_SECRET_KEY": SECRET_KEY,
        "POINTGUARD_JWKS_REFETCH_INTERVAL_S": "0",  # a rotated key is seen at once
    }
    app = create_app(
        load_settings(settings),
        upkeep=False,
        workers=False,
        dispatch=False,
    )
    async with app.router.lifespan_context(app):
        merchant = await merchant_with_program(run, app.state.secret_key, "Hook Shop")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as client:
            yield client, merchant


class Receiver:
    """A merchant's endpoint: answers 500 to the first `fail_first` requests, then 204, and
    records every request."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.peers: set[tuple[str, int]] = set()  # the connections requests came on
        self.lock = threading.Lock()
        self.url = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            status = 500 if len(self.requests) < self.fail_first else 204
            self.requests.append((dict(request.headers), body, status))
            if request.client is not None:
                self.peers.add((request.client.host, request.client.port))
        return Response(status_code=status)

    def accept_from_now(self) -> None:
        with self.lock:
            self.fail_first = len(self.requests)

    def accepted_ids(self) -> list[str]:
        return sorted(h["webhook-id"] for h, _, status in self.requests if status == 204)

    def verify_signatures(self, merchant: NewMerchant) -> None:
        """Every request received is a JSON Standard Webhook whose `v1` signature a Standard
        Webhooks library verifies with the merchant's outbound secret and whose `v1a`
        signature verifies with its outbound public key."""
        public_key = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(merchant.outbound_public_key)
        )
        for headers, body, _ in self.requests:
            assert headers["content-type"] == "application/json"
            Webhook(merchant.outbound_webhook_secret).verify(body, headers)  # v1, by the library
            content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
            v1a = [
                s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s[:4] == "v1a,"
            ]
            assert len(v1a) == 1
            public_key.verify(base64.b64decode(v1a[0]), content)  # raises InvalidSignature if not


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1, in a thread; yields `http://127.0.0.1:port`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A merchant's endpoint on 127.0.0.1, which deliveries may reach: loopback allowed."""
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "1")
    receiver = Receiver()
    with serving(Starlette(routes=[Route("/hooks", receiver.handle, methods=["POST"])])) as base:
        receiver.url = f"{base}/hooks"
        yield receiver


class Storefront:
    """A Saleor-style storefront: RSA keys by `kid`, signing as Saleor does, and its JWKS at
    `url`. `fetches` counts the GETs of the JWKS; `status` and `delay_s` make it fail or
    stall."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.status = 200
        self.delay_s = 0.0
        self.url = ""

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
            numbers = key.public_key().public_numbers()
            return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256"} | {
                "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": _b64url(numbers.e.to_bytes(3, "big")),
            }

        return {"keys": [jwk(kid, key) for kid, key in self.keys.items()]}

    async def handle(self, request: Request) -> Response:
        self.fetches += 1
        await asyncio.sleep(self.delay_s)
        return JSONResponse(self.jwks(), status_code=self.status)

    def sign(
        self,
        body: bytes,
        kid: str,
        *,
        signer: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """`Saleor-Signature` for `body`: a detached JWS over the raw body (RFC 7797), with
        `kid` in its header, signed with the key of `signer` (default: `kid`). `header`
        overrides or, given None, removes header parameters."""
        fields = {"alg": "RS256", "b64": False, "crit": ["b64"], "kid": kid, "typ": "JWT"}
        fields |= header or {}
        fields = {k: v for k, v in fields.items() if v is not None}
        protected = _b64url(json.dumps(fields, separators=(",", ":")).encode())
        key = self.keys[signer or kid]
        signature = key.sign(protected.encode() + b"." + body, PKCS1v15(), SHA256())
        return f"{protected}..{_b64url(signature)}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def storefront(monkeypatch: pytest.MonkeyPatch) -> Iterator[Storefront]:
    """A storefront with one key, `k1`, whose JWKS is served at `storefront.url` on 127.0.0.1
    (loopback allowed)."""
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "1")
    store = Storefront()
    store.add_key("k1")
    route = Route("/.well-known/jwks.json", store.handle)
    with serving(Starlette(routes=[route])) as base:
        store.url = f"{base}/.well-known/jwks.json"
        yield store
