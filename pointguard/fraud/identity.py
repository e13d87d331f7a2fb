"""Identifiers that link members, normalised and reduced to keyed digests. Pure.

The guard links members who share a payment card, a device, a shipping address, an email or a
phone (after normalising each, so that `Ann.Smith+promo@gmail.com` and `annsmith@gmail.com`
are one inbox and `12 Main St., Apt 4` is `12 main street unit 4`), or an IP /24 network (/64
for IPv6). Only HMAC-SHA256 digests under the merchant's own key are stored: the raw values
never reach the database, and digests of one merchant say nothing about another's.

Hard links (card, device, address) say "probably the same household or person"; an IP prefix
is soft (households, offices and mobile carriers share them), and rules use it only as a
feature.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib.resources import files

from pointguard.fraud.signals import Address, Signals

IPV4_PREFIX = 24
IPV6_PREFIX = 64
# Providers where dots in the local part do not matter (and googlemail is gmail).
DOTLESS_PROVIDERS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
ADDRESS_WORDS = {
    "st": "street", "str": "street", "rd": "road", "ave": "avenue", "av": "avenue",
    "blvd": "boulevard", "dr": "drive", "ln": "lane", "ct": "court", "pl": "place",
    "sq": "square", "hwy": "highway", "pkwy": "parkway", "apt": "unit", "apartment": "unit",
    "ste": "unit", "suite": "unit", "no": "unit", "flat": "unit", "fl": "floor", "n": "north",
    "s": "south", "e": "east", "w": "west",
}  # fmt: skip
_NOT_WORD = re.compile(r"[^\w]+")


class LinkKind(StrEnum):
    DEVICE = "device"
    IP_PREFIX = "ip_prefix"
    CARD = "card"
    ADDRESS = "address"
    EMAIL = "email"
    PHONE = "phone"
    # The domain of an email from a throwaway-inbox provider: that the member has one, and how
    # many members share the provider.
    DISPOSABLE_EMAIL = "disposable_email"


HARD_LINKS = frozenset({LinkKind.CARD, LinkKind.DEVICE, LinkKind.ADDRESS})
SAME_PERSON_LINKS = frozenset({LinkKind.CARD, LinkKind.DEVICE, LinkKind.EMAIL, LinkKind.PHONE})


@dataclass(frozen=True)
class Identifier:
    kind: LinkKind
    value: str  # normalised; never stored


def normalise_email(email: str) -> str:
    """Lower case, without a plus tag, and without dots for providers that ignore them."""
    local, _, domain = email.strip().lower().rpartition("@")
    domain = DOTLESS_PROVIDERS.get(domain, domain)
    local = local.split("+", 1)[0]
    if domain in DOTLESS_PROVIDERS.values():
        local = local.replace(".", "")
    return f"{local}@{domain}"


def email_domain(email: str) -> str:
    return email.strip().lower().rpartition("@")[2]


def is_disposable(email: str) -> bool:
    """Whether the email's domain (or a parent domain) is a known throwaway-inbox provider."""
    parts = email_domain(email).split(".")
    return any(".".join(parts[i:]) in disposable_domains() for i in range(len(parts) - 1))


@cache
def disposable_domains() -> frozenset[str]:
    """The throwaway-inbox domains shipped with the package (`disposable_domains.txt`)."""
    text = files("pointguard.fraud").joinpath("disposable_domains.txt").read_text()
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def normalise_address(address: Address) -> str | None:
    """One spelling per address: accents folded, case and punctuation dropped, common
    abbreviations spelled out, unit markers unified; None without a first line."""
    if not address.line1:
        return None
    parts = [address.line1, address.line2, address.postal_code, address.city, address.country]
    words = []
    for part in parts:
        if not part:
            continue
        folded = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode().lower()
        words += [ADDRESS_WORDS.get(word, word) for word in _NOT_WORD.split(folded) if word]
    return " ".join(words)


def normalise_phone(phone: str) -> str | None:
    """Digits only (a leading + kept); None for fewer than six digits."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 6:
        return None
    return ("+" if phone.strip().startswith("+") else "") + digits


def ip_prefix(ip: str) -> str | None:
    """The /24 (IPv4) or /64 (IPv6) network of an address; None if it is not one."""
    quad = ip.strip().split(".")
    if len(quad) == 4 and all(part.isdigit() and len(part) <= 3 for part in quad):
        octets = [int(part) for part in quad]  # the common case, without `ipaddress`'s cost
        if max(octets) <= 255:
            return f"{octets[0]}.{octets[1]}.{octets[2]}.0/{IPV4_PREFIX}"
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def identifiers(signals: Signals | None) -> list[Identifier]:
    """The normalised identifiers an event's signals carry."""
    if signals is None:
        return []
    found: list[tuple[LinkKind, str | None]] = [
        (LinkKind.DEVICE, signals.device_id.strip() if signals.device_id else None),
        (LinkKind.IP_PREFIX, ip_prefix(signals.ip) if signals.ip else None),
        (
            LinkKind.CARD,
            signals.payment_fingerprint.strip() if signals.payment_fingerprint else None,
        ),
        (
            LinkKind.ADDRESS,
            normalise_address(signals.shipping_address) if signals.shipping_address else None,
        ),
        (LinkKind.EMAIL, normalise_email(signals.email) if signals.email else None),
        (LinkKind.PHONE, normalise_phone(signals.phone) if signals.phone else None),
        (
            LinkKind.DISPOSABLE_EMAIL,
            email_domain(signals.email) if signals.email and is_disposable(signals.email) else None,
        ),
    ]
    return [Identifier(kind, value) for kind, value in found if value]


def digest(key: bytes, identifier: Identifier) -> bytes:
    """The keyed digest stored for an identifier; the kind is part of the message, so a device
    id and an email that happen to be equal strings do not link."""
    message = f"{identifier.kind.value}\x00{identifier.value}".encode()
    return hmac.digest(key, message, "sha256")
