"""The fraud guard's signals from the wire to the events: each canonical event type's signals
decoded to `Signals` (and none when it carries none), every bad value refused with a 422 naming
its field through `POST /webhooks/{merchant}` with the inbox and the ledger unchanged, and what
each adapter maps from a realistic payload of its sender."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from pointguard.errors import InvalidPayload
from pointguard.ledger import member_balances
from pointguard.plugin.adapters.saleor import saleor_to_canonical
from pointguard.plugin.adapters.shopify import shopify_to_canonical
from pointguard.plugin.adapters.woocommerce import woocommerce_to_canonical
from pointguard.plugin.payloads import envelope_of, to_program_event
from pointguard.plugin.worker import process_merchant
from pointguard.program.events import ActionPerformed, Address, Signals
from tests.plugin.test_adapters import SHOPIFY_PAID, WOO_PAID, changed, post_signed
from tests.plugin.test_ingest import inbox_count, paid, post
from tests.plugin.test_saleor import (
    USER,
    event,
    order,
    saleor_shop,  # noqa: F401  (a fixture)
)
from tests.plugin.test_saleor import post as post_saleor

UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
DEVICE = {"device_id": "dev-81", "ip": "203.0.113.7", "user_agent": UA}
ADDRESS = {
    "line1": "12 Main St.",
    "line2": "Apt 4",
    "city": "Springfield",
    "postal_code": "62701",
    "region": "IL",
    "country": "US",
}
PERSON = DEVICE | {"email": "ann@example.com", "phone": "+1 217 555 0100"}
PERSON_WITH_ADDRESS = PERSON | {"shipping_address": ADDRESS}
BUYER = PERSON_WITH_ADDRESS | {"payment_fingerprint": "fp_9a"}
SIGNALS = Signals(**PERSON, shipping_address=Address(**ADDRESS), payment_fingerprint="fp_9a")
DEVICE_SIGNALS = Signals(**DEVICE)
PERSON_SIGNALS = Signals(**PERSON, shipping_address=Address(**ADDRESS))

# Each event type's data without signals, and the signals it takes out of BUYER (every field).
EVENTS: dict[str, tuple[dict[str, Any], Signals]] = {
    "order.paid": (paid("1042")["data"], SIGNALS),
    "order.refunded": (
        {"order_id": "1042", "customer_id": "ann", "lines": [{"line_id": "1", "quantity": 1}]},
        DEVICE_SIGNALS,
    ),
    "order.cancelled": ({"order_id": "1042", "customer_id": "ann"}, DEVICE_SIGNALS),
    "customer.created": ({"customer_id": "ann"}, PERSON_SIGNALS),
    "customer.updated": ({"customer_id": "ann", "profile_completed": True}, PERSON_SIGNALS),
    "review.published": ({"customer_id": "ann"}, DEVICE_SIGNALS),
    "social.shared": ({"customer_id": "ann"}, DEVICE_SIGNALS),
    "action.performed": ({"customer_id": "ann", "action": "quiz.completed"}, DEVICE_SIGNALS),
}


def canonical(event_type: str, **fields: object) -> dict[str, Any]:
    """A canonical event of `event_type` (its data as in EVENTS, without the ingest test's
    device id) with `fields` added to its data."""
    data = {k: v for k, v in copy.deepcopy(EVENTS[event_type][0]).items() if k != "device_id"}
    return {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data | fields,
    }


def decoded(document: dict[str, Any]) -> Any:
    return to_program_event("msg_1", envelope_of(document))


@pytest.mark.parametrize("event_type", EVENTS)
def test_each_event_type_decodes_its_signals_and_none_without(event_type):
    assert decoded(canonical(event_type)).signals is None
    # Every field at once: each type takes its own, and ignores the rest.
    assert decoded(canonical(event_type, **BUYER)).signals == EVENTS[event_type][1]
    only_ip = decoded(canonical(event_type, ip="2001:db8::7")).signals
    assert only_ip == Signals(ip="2001:db8::7")


@pytest.mark.parametrize("event_type", ["order.paid", "customer.created", "customer.updated"])
def test_a_person_s_signals_come_alone_or_with_a_partial_address(event_type):
    assert decoded(canonical(event_type, email="bob@example.org")).signals == Signals(
        email="bob@example.org"
    )
    partial = decoded(canonical(event_type, shipping_address={"city": "Lyon", "country": "FR"}))
    assert partial.signals == Signals(shipping_address=Address(city="Lyon", country="FR"))


def test_blank_signals_are_no_signals():
    blank = canonical(
        "order.paid",
        device_id="",
        ip=" ",
        user_agent=None,
        email="",
        payment_fingerprint="  ",
        shipping_address={"line1": "", "city": " ", "country": None},
    )
    assert decoded(blank).signals is None
    some = canonical("order.paid", device_id="", shipping_address={"line1": "", "city": "Lyon"})
    assert decoded(some).signals == Signals(shipping_address=Address(city="Lyon"))


def test_a_signup_s_own_code_and_a_review_s_sku_and_rating():
    signup = decoded(canonical("customer.created", own_referral_code="ANN-10"))
    assert (signup.action, signup.own_referral_code) == ("signup", "ANN-10")
    update = decoded(canonical("customer.updated", own_referral_code="ANN-10"))
    assert update.own_referral_code is None  # a signup's alone
    review = decoded(canonical("review.published", sku="BOOT-7", rating=5, **DEVICE))
    assert review == ActionPerformed(
        event_id="msg_1",
        member_id="ann",
        occurred_at=review.occurred_at,
        action="review.published",
        sku="BOOT-7",
        rating=5,
        signals=DEVICE_SIGNALS,
    )
    plain = decoded(canonical("review.published"))
    assert (plain.sku, plain.rating) == (None, None)
    shared = decoded(canonical("social.shared", sku="BOOT-7", rating=9))  # not a review's
    assert (shared.sku, shared.rating) == (None, None)


BAD = [
    ("order.paid", "ip", "203.0.113", "$.data.ip"),
    ("order.paid", "ip", "203.0.113.7/24", "$.data.ip"),
    ("order.paid", "ip", 3405803783, "$.data.ip"),
    ("order.paid", "device_id", "d" * 201, "$.data.device_id"),
    ("order.paid", "user_agent", "u" * 1001, "$.data.user_agent"),
    ("order.paid", "payment_fingerprint", ["fp_9a"], "$.data.payment_fingerprint"),
    ("order.paid", "email", "ann.example.com", "$.data.email"),
    ("order.paid", "phone", 12175550100, "$.data.phone"),
    ("order.paid", "shipping_address", "12 Main St., Springfield", "$.data.shipping_address"),
    ("order.paid", "shipping_address", {"city": "c" * 201}, "$.data.shipping_address.city"),
    ("order.paid", "shipping_address", {"country": 1}, "$.data.shipping_address.country"),
    ("order.refunded", "ip", "localhost", "$.data.ip"),
    ("order.cancelled", "user_agent", {"ua": UA}, "$.data.user_agent"),
    ("customer.created", "email", "ann@example@com", "$.data.email"),
    ("customer.created", "email", "@example.com", "$.data.email"),
    ("customer.created", "email", "ann@", "$.data.email"),
    ("customer.created", "email", "a" * 243 + "@example.com", "$.data.email"),  # 255
    ("customer.created", "own_referral_code", "c" * 201, "$.data.own_referral_code"),
    ("customer.updated", "shipping_address", ["12 Main St."], "$.data.shipping_address"),
    ("customer.updated", "device_id", 81, "$.data.device_id"),
    ("review.published", "rating", 0, "$.data.rating"),
    ("review.published", "rating", 6, "$.data.rating"),
    ("review.published", "rating", 4.5, "$.data.rating"),
    ("review.published", "rating", "5", "$.data.rating"),
    ("review.published", "rating", True, "$.data.rating"),
    ("review.published", "sku", "s" * 201, "$.data.sku"),
    ("social.shared", "ip", "1.2.3.4.5", "$.data.ip"),
    ("action.performed", "ip", "::1::", "$.data.ip"),
]


@pytest.mark.parametrize(("event_type", "name", "value", "field"), BAD)
async def test_a_bad_signal_is_a_422_naming_it_and_changes_nothing(
    shop, engine, run, event_type, name, value, field
):
    client, merchant = shop
    before = await run(member_balances, merchant.merchant_id, "ann")
    response = await post(client, merchant, canonical(event_type, **{name: value}), "msg_bad")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_payload", field)
    assert await inbox_count(engine, merchant.merchant_id) == 0
    await process_merchant(engine, merchant.merchant_id)
    assert await run(member_balances, merchant.merchant_id, "ann") == before


async def test_events_with_signals_are_accepted_and_applied(shop, engine, run):
    client, merchant = shop
    signup = canonical("customer.created", own_referral_code="ANN-10", **PERSON_WITH_ADDRESS)
    for webhook_id, document in (("msg_s", signup), ("msg_o", canonical("order.paid", **BUYER))):
        response = await post(client, merchant, document, webhook_id)
        assert (response.status_code, response.json()["status"]) == (202, "pending")
    done = await process_merchant(engine, merchant.merchant_id)
    assert (done.applied, done.dead) == (2, 0)
    assert (await run(member_balances, merchant.merchant_id, "ann")).pending_points == 25


def program_event(adapted: tuple[str, dict[str, Any] | None]) -> Any:
    """The program event of an adapter's canonical event, as ingest and the worker decode it."""
    _, document = adapted
    assert document is not None
    return to_program_event("msg_1", envelope_of(document))


SHOPIFY_ADDRESS = {
    "first_name": "Bob",
    "last_name": "Norman",
    "address1": "123 Amoebobacterieae St",
    "address2": "",
    "city": "Ottawa",
    "province": "Ontario",
    "province_code": "ON",
    "zip": "K2P0V6",
    "country": "Canada",
    "country_code": "CA",
    "phone": "555-625-1199",
}
SHOPIFY_WITH_SIGNALS = SHOPIFY_PAID | {
    "email": "bob.norman@mail.example.com",
    "phone": "+13125551212",
    "browser_ip": "216.191.105.146",
    "client_details": {
        "accept_language": "en-US,en;q=0.9",
        "browser_ip": "216.191.105.146",
        "user_agent": UA,
        "session_hash": None,
    },
    "customer": {"id": 115310627314723954, "email": "bob.norman@mail.example.com"},
    "shipping_address": SHOPIFY_ADDRESS,
}
OTTAWA = Address(
    line1="123 Amoebobacterieae St",
    city="Ottawa",
    postal_code="K2P0V6",
    region="ON",
    country="CA",
)


def shopify(topic: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    return shopify_to_canonical(topic, payload, body_digest="d", customer_of_order="m")


def test_shopify_orders_and_customers_map_their_signals():
    assert program_event(shopify("orders/paid", SHOPIFY_WITH_SIGNALS)).signals == Signals(
        ip="216.191.105.146",
        user_agent=UA,
        email="bob.norman@mail.example.com",
        phone="+13125551212",
        shipping_address=OTTAWA,
    )
    # No top-level IP, email or phone: client_details' IP and the customer's email and phone.
    fallback = changed(SHOPIFY_WITH_SIGNALS, ("browser_ip",), None)
    fallback = changed(fallback, ("email",), None)
    fallback = changed(fallback, ("phone",), None)
    fallback = changed(fallback, ("customer", "phone"), "+16135550199")
    fallback = changed(fallback, ("client_details", "browser_ip"), "2001:db8::1")
    fallback = changed(fallback, ("shipping_address", "province_code"), None)
    assert program_event(shopify("orders/paid", fallback)).signals == Signals(
        ip="2001:db8::1",
        user_agent=UA,
        email="bob.norman@mail.example.com",
        phone="+16135550199",
        shipping_address=msgspec.structs.replace(OTTAWA, region="Ontario"),
    )
    _, bare = shopify("orders/paid", SHOPIFY_PAID)
    assert bare is not None and "ip" not in bare["data"] and "email" not in bare["data"]
    assert program_event(shopify("orders/paid", SHOPIFY_PAID)).signals is None

    customer = {
        "id": 706405506930370084,
        "email": "bob@example.com",
        "phone": "+13125551212",
        "created_at": "2026-11-01T08:00:00+00:00",
        "default_address": SHOPIFY_ADDRESS | {"default": True},
    }
    for topic in ("customers/create", "customers/update"):
        assert program_event(shopify(topic, customer)).signals == Signals(
            email="bob@example.com", phone="+13125551212", shipping_address=OTTAWA
        )
    phone_only = {"id": 7, "email": None, "phone": "+13125551212", "default_address": None}
    assert program_event(shopify("customers/create", phone_only)).signals == Signals(
        phone="+13125551212"
    )
    _, unknown = shopify("customers/create", {"id": 7, "email": None})
    assert unknown is not None and unknown["data"] == {"customer_id": "7"}


WOO_SHIPPING = {
    "first_name": "John",
    "last_name": "Doe",
    "company": "",
    "address_1": "969 Market",
    "address_2": "",
    "city": "San Francisco",
    "state": "CA",
    "postcode": "94103",
    "country": "US",
}
WOO_WITH_SIGNALS = WOO_PAID | {
    "customer_ip_address": "198.51.100.23",
    "customer_user_agent": UA,
    "billing": WOO_SHIPPING | {"email": "john.doe@example.com", "phone": "(555) 555-5555"},
    "shipping": WOO_SHIPPING,
}
MARKET = Address(
    line1="969 Market", city="San Francisco", postal_code="94103", region="CA", country="US"
)


def test_woocommerce_orders_and_customers_map_their_signals():
    adapted = woocommerce_to_canonical("order.updated", WOO_WITH_SIGNALS, body_digest="d")
    assert program_event(adapted).signals == Signals(
        ip="198.51.100.23",
        user_agent=UA,
        email="john.doe@example.com",
        phone="(555) 555-5555",
        shipping_address=MARKET,
    )
    # WooCommerce sends empty strings for what it does not know.
    unknown = WOO_PAID | {
        "customer_ip_address": "",
        "customer_user_agent": "",
        "billing": {"email": "", "phone": ""},
        "shipping": {key: "" for key in WOO_SHIPPING},
    }
    adapted = woocommerce_to_canonical("order.updated", unknown, body_digest="d")
    assert program_event(adapted).signals is None

    customer = {
        "id": 26,
        "email": "john.doe@example.com",
        "date_created_gmt": "2026-11-01T08:00:00",
        "billing": WOO_SHIPPING | {"email": "john.doe@example.com", "phone": "(555) 555-5555"},
        "shipping": WOO_SHIPPING,
    }
    adapted = woocommerce_to_canonical("customer.created", customer, body_digest="d")
    assert program_event(adapted).signals == Signals(
        email="john.doe@example.com", phone="(555) 555-5555", shipping_address=MARKET
    )


SALEOR_ADDRESS = {
    "firstName": "Ann",
    "lastName": "Kowalska",
    "streetAddress1": "ul. Tęczowa 7",
    "streetAddress2": "",
    "city": "WROCŁAW",
    "postalCode": "53-601",
    "countryArea": "",
    "country": {"code": "PL", "country": "Poland"},
    "phone": "+48713988155",
}
TECZOWA = Address(line1="ul. Tęczowa 7", city="WROCŁAW", postal_code="53-601", country="PL")


def test_saleor_orders_and_customers_map_their_signals():
    payments = [{"customerIpAddress": "198.51.100.1"}, {"customerIpAddress": "2001:db8::5"}]
    paid_order = order(shippingAddress=SALEOR_ADDRESS, payments=[*payments, {}])
    adapted = saleor_to_canonical(
        "order_fully_paid", event("OrderFullyPaid", order=paid_order), "d"
    )
    assert program_event(adapted).signals == Signals(
        ip="2001:db8::5",  # the newest payment that has one
        email="ann@example.com",
        phone="+48713988155",
        shipping_address=TECZOWA,
    )
    no_user_email = order(userEmail=None)  # the user's own, then
    adapted = saleor_to_canonical(
        "order_fully_paid", event("OrderFullyPaid", order=no_user_email), "d"
    )
    assert program_event(adapted).signals == Signals(email="ann@example.com")

    user = {"id": USER, "email": "ann@example.com", "defaultShippingAddress": SALEOR_ADDRESS}
    for name, typename in (
        ("customer_created", "CustomerCreated"),
        ("customer_updated", "CustomerUpdated"),
    ):
        adapted = saleor_to_canonical(name, event(typename, user=user), "d")
        assert program_event(adapted).signals == Signals(
            email="ann@example.com", phone="+48713988155", shipping_address=TECZOWA
        )


MALFORMED_SHOPIFY = [
    ({("browser_ip",): "216.191.105"}, "$.browser_ip"),
    ({("client_details",): "216.191.105.146"}, "$.client_details"),
    ({("browser_ip",): None, ("client_details", "browser_ip"): 216}, "$.client_details.browser_ip"),
    ({("client_details", "user_agent"): "u" * 1001}, "$.client_details.user_agent"),
    ({("email",): "bob.norman"}, "$.email"),
    ({("email",): None, ("customer", "email"): "bob@"}, "$.customer.email"),
    ({("phone",): ["+13125551212"]}, "$.phone"),
    ({("shipping_address",): "123 Amoebobacterieae St"}, "$.shipping_address"),
    ({("shipping_address", "zip"): {"code": "K2P0V6"}}, "$.shipping_address.zip"),
]
MALFORMED_WOO = [
    ({("customer_ip_address",): "999.1.1.1"}, "$.customer_ip_address"),
    ({("customer_user_agent",): ["Mozilla"]}, "$.customer_user_agent"),
    ({("billing", "email"): "john@doe@example.com"}, "$.billing.email"),
    ({("billing",): "John Doe"}, "$.billing"),
    ({("shipping", "postcode"): 9.4103}, "$.shipping.postcode"),
]


@pytest.mark.parametrize(
    ("sender", "changes", "field"),
    [("shopify", *case) for case in MALFORMED_SHOPIFY]
    + [("woocommerce", *case) for case in MALFORMED_WOO],
)
async def test_a_malformed_signal_from_shopify_or_woocommerce_is_a_422_naming_it(
    shop, engine, sender, changes, field
):
    client, merchant = shop
    topic, payload = {
        "shopify": ("orders/paid", SHOPIFY_WITH_SIGNALS),
        "woocommerce": ("order.updated", WOO_WITH_SIGNALS),
    }[sender]
    for path, value in changes.items():
        payload = changed(payload, path, value)
    response = await post_signed(client, merchant, sender, topic, payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_payload", field)
    assert await inbox_count(engine, merchant.merchant_id) == 0


def saleor_paid_with(path: tuple[Any, ...], value: object) -> dict[str, Any]:
    signalled = order(shippingAddress=SALEOR_ADDRESS, payments=[{"customerIpAddress": "::1"}])
    return changed(event("OrderFullyPaid", order=signalled), ("order", *path), value)


MALFORMED_SALEOR = [
    (("payments", 0, "customerIpAddress"), "::1::", "$.order.payments[0].customerIpAddress"),
    (("payments",), {"customerIpAddress": "::1"}, "$.order.payments"),
    (("userEmail",), "ann", "$.order.userEmail"),
    (("shippingAddress", "country"), "PL", "$.order.shippingAddress.country"),
    (("shippingAddress", "country", "code"), ["PL"], "$.order.shippingAddress.country.code"),
    (("shippingAddress", "phone"), "+" * 201, "$.order.shippingAddress.phone"),
]


@pytest.mark.parametrize(("path", "value", "field"), MALFORMED_SALEOR)
async def test_a_malformed_signal_from_saleor_is_a_422_naming_it(
    saleor_shop,  # noqa: F811  (the fixture imported)
    engine,
    path,
    value,
    field,
):
    client, merchant, storefront = saleor_shop
    payload = saleor_paid_with(path, value)
    response = await post_saleor(client, merchant, storefront, "order_fully_paid", payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_payload", field)
    assert await inbox_count(engine, merchant.merchant_id) == 0


def test_adapters_and_the_decoder_take_emails_up_to_the_same_length():
    longest = "a" * 242 + "@example.com"  # 254 characters
    adapted = shopify("customers/create", {"id": 7, "email": longest})
    assert program_event(adapted).signals == Signals(email=longest)
    with pytest.raises(InvalidPayload, match=r"\$\.email is longer than 254 characters"):
        shopify("customers/create", {"id": 7, "email": "a" + longest})
