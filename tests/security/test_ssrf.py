"""Server-side request forgery (issue 9, item 6): the URLs merchants' settings name (webhook
endpoints, storefronts' JWKS) never take PointGuard into its own network.

- Setting an endpoint or JWKS URL written as a private, link-local, multicast, reserved or
  unspecified address is refused at once.
- At use, a name is resolved and refused, before any connection is opened, when any of its
  addresses is such an address, or loopback unless `POINTGUARD_ALLOW_LOOPBACK_ENDPOINTS` is on;
  the connection goes to the address that was checked (a DNS answer that changes afterwards,
  rebinding, is never asked for).
- The 401 for an unknown Saleor `kid` says `unknown_key_id` and nothing else: not the JWKS URL
  (with any credentials in it), not why a fetch failed; those are logged, without credentials.

Every server here is one the test starts on 127.0.0.1; a refused address is never connected to.
"""

from __future__ import annotations

import json

import pytest

from pointguard import db
from pointguard.config import ALLOW_LOOPBACK_ENDPOINTS, load_settings
from pointguard.errors import AddressRefused, KeySetUnavailable, MerchantInvalid
from pointguard.plugin.credentials import CredentialCache
from pointguard.plugin.dispatcher import deliver_merchant
from pointguard.plugin.jwks import KeySetCache
from pointguard.plugin.merchants import create_merchant, set_endpoint, set_jwks_url
from pointguard.plugin.outbound_http import OutboundClient, refused_kind
from pointguard.program.outbox import write_events
from tests.plugin.test_saleor import event, order, post

NEVER_REACHED = [
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("http://10.0.0.7/hooks", id="private-10"),
    pytest.param("https://192.168.1.1/hooks", id="private-192.168"),
    pytest.param("http://172.16.5.4:8080/hooks", id="private-172.16"),
    pytest.param("http://[fe80::1]/hooks", id="link-local-v6"),
    pytest.param("http://[fd00::1]/hooks", id="unique-local-v6"),
    pytest.param("http://[::ffff:169.254.169.254]/", id="v4-mapped-metadata"),
    pytest.param("http://0.0.0.0:8000/hooks", id="unspecified"),
    pytest.param("http://224.0.0.1/hooks", id="multicast"),
    pytest.param("http://240.0.0.1/hooks", id="reserved"),
    pytest.param("http://100.64.0.1/hooks", id="shared-address-space"),
]


@pytest.mark.parametrize("url", NEVER_REACHED)
async def test_an_endpoint_on_an_internal_address_is_refused_when_set(run, secret_key, url):
    with pytest.raises(MerchantInvalid, match="address"):
        await run(create_merchant, secret_key, "Probe Shop", endpoint_url=url)
    merchant = await run(create_merchant, secret_key, "Probe Shop")
    with pytest.raises(MerchantInvalid, match="address"):
        await run(set_endpoint, secret_key, merchant.merchant_id, url)


@pytest.mark.parametrize("url", NEVER_REACHED)
async def test_a_jwks_url_on_an_internal_address_is_refused_when_set(run, secret_key, url):
    merchant = await run(create_merchant, secret_key, "Probe Shop")
    with pytest.raises(MerchantInvalid):
        await run(set_jwks_url, secret_key, merchant.merchant_id, url.replace("http:", "https:"))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("fe80::1%eth0", "link-local"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("64:ff9b::a00:1", "reserved"),  # NAT64 of 10.0.0.1
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
    ],
)
def test_addresses_are_judged_by_kind(address, kind):
    assert refused_kind(address, allow_loopback=False) == kind
    assert refused_kind(address, allow_loopback=True) == (None if kind == "loopback" else kind)


async def test_a_delivery_to_a_name_on_this_machine_is_refused_at_use(
    engine, run, secret_key, receiver, monkeypatch
):
    """`localhost` passes when set (the delivering process decides about loopback), and is
    refused when the delivery resolves it: nothing reaches the server listening there."""
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "0")
    url = receiver.url.replace("127.0.0.1", "localhost")
    merchant = await run(create_merchant, secret_key, "Sly Shop", endpoint_url=url)
    await run(write_events, merchant.merchant_id, [("points.pending", {"points": 1})])
    done = await deliver_merchant(engine, CredentialCache(secret_key), merchant.merchant_id)
    assert done.retried == 1
    assert receiver.requests == []
    async with db.connection(engine) as pg:
        error = await pg.fetchval(
            "SELECT last_error FROM outbox_deliveries WHERE merchant_id = $1",
            merchant.merchant_id,
        )
    assert error.startswith("AddressRefused: localhost resolves to ")
    assert error.endswith("a loopback address")


def test_loopback_is_allowed_only_by_the_explicit_setting():
    assert load_settings({}).allow_loopback_endpoints is False
    assert load_settings({ALLOW_LOOPBACK_ENDPOINTS: "1"}).allow_loopback_endpoints is True
    with pytest.raises(ValueError, match=ALLOW_LOOPBACK_ENDPOINTS):
        load_settings({ALLOW_LOOPBACK_ENDPOINTS: "sure"})


class Resolver:
    """A DNS that answers each name from `answers`, a list per lookup (the last repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


async def test_a_name_with_any_internal_address_is_refused_before_connecting(receiver):
    """A public address first does not launder an internal one after it."""
    port = receiver.url.split(":")[2].split("/")[0]
    resolver = Resolver(["93.184.215.14", "169.254.169.254"])
    async with OutboundClient(allow_loopback=True, resolve=resolver) as client:
        with pytest.raises(AddressRefused, match=r"resolves to 169\.254\.169\.254, a link-local"):
            await client.request(
                "POST", f"http://shop.test:{port}/hooks", deadline_s=5, max_body_bytes=1024
            )
    assert resolver.lookups == ["shop.test"]
    assert receiver.requests == []


async def test_the_connection_goes_to_the_checked_address_not_a_later_answer(receiver):
    """DNS rebinding: the name is resolved once, when the connection opens, and the address
    checked is the address connected to; a second answer (internal) is never asked for. The
    request still names the host, as the server expects."""
    port = receiver.url.split(":")[2].split("/")[0]
    resolver = Resolver(["127.0.0.1"], ["10.0.0.1"])
    async with OutboundClient(allow_loopback=True, resolve=resolver) as client:
        for _ in range(2):  # the second request reuses the kept-alive connection
            answer = await client.request(
                "POST",
                f"http://rebind.test:{port}/hooks",
                content=b"{}",
                deadline_s=5,
                max_body_bytes=1024,
            )
            assert answer.status == 204
    assert resolver.lookups == ["rebind.test"]
    assert [headers["host"] for headers, _, _ in receiver.requests] == [f"rebind.test:{port}"] * 2


async def test_a_jwks_on_this_machine_is_not_fetched_unless_allowed(storefront, monkeypatch):
    monkeypatch.setenv(ALLOW_LOOPBACK_ENDPOINTS, "0")
    with pytest.raises(KeySetUnavailable):
        await KeySetCache().key(storefront.url.replace("127.0.0.1", "localhost"), "k1")
    assert storefront.fetches == 0
    await KeySetCache(allow_loopback=True).key(storefront.url, "k1")
    assert storefront.fetches == 1


@pytest.fixture
async def guarded_shop(shop, storefront, run, secret_key):
    """`(client, merchant, storefront)`: the shop, its JWKS URL the storefront's with a user,
    a password and a token in it."""
    client, merchant = shop
    url = storefront.url.replace("http://", "http://jwks-user:s3cret-pass@") + "?token=t0ken"
    await run(set_jwks_url, secret_key, merchant.merchant_id, url)
    return client, merchant, storefront


async def test_an_unknown_kid_is_told_unknown_key_id_and_nothing_more(guarded_shop, caplog):
    client, merchant, storefront = guarded_shop
    storefront.add_key("k9")
    body = json.dumps(event("OrderFullyPaid", order=order())).encode()
    signature = storefront.sign(body, "k9")
    del storefront.keys["k9"]
    response = await post(
        client, merchant, storefront, "order_fully_paid", body, signature=signature
    )
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unknown_key_id", "message": "unknown_key_id"}}
    # The rest is for the operator: in the log, and without the credentials.
    host_and_path = storefront.url.removeprefix("http://")
    assert host_and_path in caplog.text
    assert "s3cret-pass" not in caplog.text and "t0ken" not in caplog.text


async def test_a_jwks_that_cannot_be_fetched_is_a_503_that_names_no_url(guarded_shop, caplog):
    client, merchant, storefront = guarded_shop
    storefront.status = 500
    response = await post(
        client, merchant, storefront, "order_fully_paid", event("OrderFullyPaid", order=order())
    )
    assert response.status_code == 503
    text = response.text
    assert "jwks.json" not in text and "127.0.0.1" not in text and "s3cret" not in text
    assert "HTTP 500" not in text
    assert "answered HTTP 500" in caplog.text and "s3cret-pass" not in caplog.text
