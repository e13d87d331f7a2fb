"""Identifiers, normalised and digested: one inbox, one address, one network each, whatever the
spelling; digests keyed per merchant and per kind."""

import pytest

from pointguard.fraud.identity import (
    Identifier,
    LinkKind,
    digest,
    identifiers,
    ip_prefix,
    is_disposable,
    normalise_address,
    normalise_email,
    normalise_phone,
)
from pointguard.fraud.signals import Address, Signals


@pytest.mark.parametrize(
    ("email", "normalised"),
    [
        ("Ann.Smith+promo@Gmail.com", "annsmith@gmail.com"),
        ("a.n.n.smith@googlemail.com", "annsmith@gmail.com"),
        ("ann.smith+x@example.com", "ann.smith@example.com"),  # dots matter elsewhere
        ("  ANN@Example.COM ", "ann@example.com"),
    ],
)
def test_emails_normalise_to_one_inbox(email: str, normalised: str) -> None:
    assert normalise_email(email) == normalised


@pytest.mark.parametrize(
    ("email", "disposable"),
    [
        ("x@mailinator.com", True),
        ("x@eu.mailinator.com", True),  # a subdomain of a listed domain
        ("x@yopmail.fr", True),
        ("x@gmail.com", False),
        ("x@notmailinator.com", False),
    ],
)
def test_disposable_domains(email: str, disposable: bool) -> None:
    assert is_disposable(email) is disposable


def test_addresses_normalise_across_spellings() -> None:
    one = Address(line1="12 Main St.", line2="Apt 4", postal_code="10115", city="Berlin")
    two = Address(line1="12  main street", line2="unit 4", postal_code="10115", city="BERLIN")
    other = Address(line1="12 Main St.", line2="Apt 5", postal_code="10115", city="Berlin")
    assert normalise_address(one) == normalise_address(two) == "12 main street unit 4 10115 berlin"
    assert normalise_address(other) != normalise_address(one)
    assert normalise_address(Address(city="Berlin")) is None


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.250", "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.0/24"),  # IPv4 written as IPv6
        ("not an ip", None),
    ],
)
def test_ip_prefixes(ip: str, prefix: str | None) -> None:
    assert ip_prefix(ip) == prefix


def test_phones_keep_digits() -> None:
    assert normalise_phone("+49 (30) 123-456") == "+4930123456"
    assert normalise_phone("12-34") is None


def test_identifiers_of_signals() -> None:
    signals = Signals(
        device_id=" dev-1 ",
        ip="198.51.100.23",
        email="Bob+x@gmail.com",
        payment_fingerprint="card-9",
        shipping_address=Address(line1="1 High Rd"),
    )
    assert identifiers(signals) == [
        Identifier(LinkKind.DEVICE, "dev-1"),
        Identifier(LinkKind.IP_PREFIX, "198.51.100.0/24"),
        Identifier(LinkKind.CARD, "card-9"),
        Identifier(LinkKind.ADDRESS, "1 high road"),
        Identifier(LinkKind.EMAIL, "bob@gmail.com"),
    ]
    assert identifiers(None) == []
    assert identifiers(Signals()) == []
    assert identifiers(Signals(email="Farm.7@Mailinator.com")) == [
        Identifier(LinkKind.EMAIL, "farm.7@mailinator.com"),
        Identifier(LinkKind.DISPOSABLE_EMAIL, "mailinator.com"),
    ]


def test_digests_are_keyed_and_kind_bound() -> None:
    card = Identifier(LinkKind.CARD, "x")
    device = Identifier(LinkKind.DEVICE, "x")
    assert digest(b"k1" * 16, card) == digest(b"k1" * 16, card)
    assert digest(b"k1" * 16, card) != digest(b"k2" * 16, card)
    assert digest(b"k1" * 16, card) != digest(b"k1" * 16, device)
    assert b"x" not in digest(b"k1" * 16, card)
