"""Who the simulated people are: the identifiers a storefront sees (email, phone, shipping
address, device, browser, IP, card fingerprint) and the referral code it hands each customer.

Every value is drawn from the stream's one random generator, and every kind of id is unique
within a stream (`Identities` remembers what it gave out), so two people share an identifier
only when the simulation means them to: a household's network and address, an attacker's card.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, replace
from typing import Any

FIRST_NAMES = (
    "anna", "ben", "chloe", "david", "emma", "felix", "giulia", "hugo", "ines", "jonas",
    "karin", "leo", "maria", "nils", "olivia", "paul", "quentin", "rosa", "sofia", "tom",
    "ugo", "vera", "willem", "yasmin", "zoe",
)  # fmt: skip
LAST_NAMES = (
    "martin", "bernard", "muller", "schmidt", "rossi", "russo", "garcia", "lopez", "jansen",
    "devries", "dubois", "moreau", "weber", "fischer", "ricci", "novak", "silva", "costa",
)  # fmt: skip
MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.fr", "gmx.de", "orange.fr", "web.de")
DISPOSABLE_DOMAINS = ("mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com")
STREETS = {
    "FR": ("Rue de la Paix", "Rue Victor Hugo", "Avenue Jean Jaures"),
    "DE": ("Hauptstrasse", "Bahnhofstrasse", "Schillerstrasse"),
    "IT": ("Via Roma", "Via Garibaldi", "Corso Italia"),
    "NL": ("Kerkstraat", "Dorpsstraat", "Molenweg"),
    "ES": ("Calle Mayor", "Calle Real", "Avenida de America"),
    "PT": ("Avenida da Liberdade", "Rua Augusta", "Rua do Carmo"),
}
CITIES = (  # (city, postal code prefix, country, phone prefix)
    ("Paris", "750", "FR", "+33 6"),
    ("Lyon", "690", "FR", "+33 7"),
    ("Berlin", "101", "DE", "+49 151"),
    ("Munich", "803", "DE", "+49 170"),
    ("Milan", "201", "IT", "+39 347"),
    ("Amsterdam", "101", "NL", "+31 6"),
    ("Madrid", "280", "ES", "+34 612"),
    ("Lisbon", "110", "PT", "+351 912"),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
# First octets of consumer broadband blocks in Europe; home networks are /24s inside them.
HOME_OCTETS = (78, 81, 82, 86, 90, 92, 93, 109, 176, 188, 212, 213, 217)
REFERRAL_CODE_BYTES = 8  # as the server's own codes (11 URL-safe characters)


@dataclass(frozen=True)
class Person:
    """One account's identifiers as the storefront sends them."""

    customer_id: str
    email: str
    phone: str
    address: dict[str, str]
    device_id: str
    ip: str
    user_agent: str
    card: str  # the payment provider's card fingerprint
    own_code: str  # the referral code the storefront gave this customer

    def signals(self) -> dict[str, Any]:
        """The signals of a signup or a paid order (a card only on the order: added there)."""
        return {
            "device_id": self.device_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "email": self.email,
            "phone": self.phone,
            "shipping_address": self.address,
        }

    def device_signals(self) -> dict[str, str]:
        """The signals of a review: the device and network behind it."""
        return {"device_id": self.device_id, "ip": self.ip, "user_agent": self.user_agent}


class Identities:
    """Fresh identifiers, each unique within the stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._given: set[str] = set()

    def _unique(self, make: Any) -> str:
        while (value := make()) in self._given:
            pass
        self._given.add(value)
        return str(value)

    def customer_id(self) -> str:
        return self._unique(lambda: f"cust-{self.rng.getrandbits(40):010x}")

    def order_id(self) -> str:
        return self._unique(lambda: f"o-{self.rng.getrandbits(40):010x}")

    def review_id(self) -> str:
        return self._unique(lambda: f"r-{self.rng.getrandbits(40):010x}")

    def device(self) -> str:
        return self._unique(lambda: f"dev-{self.rng.getrandbits(48):012x}")

    def card(self) -> str:
        return self._unique(lambda: f"fp_{self.rng.getrandbits(64):016x}")

    def referral_code(self) -> str:
        def make() -> str:
            raw = self.rng.getrandbits(8 * REFERRAL_CODE_BYTES).to_bytes(REFERRAL_CODE_BYTES)
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        return self._unique(make)

    def network(self) -> str:
        """A home /24 network, as its first three octets."""
        rng = self.rng
        return self._unique(
            lambda: f"{rng.choice(HOME_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}"
        )

    def ip_in(self, network: str) -> str:
        return f"{network}.{self.rng.randrange(2, 255)}"

    def address(self) -> dict[str, str]:
        rng = self.rng
        city, postal, country, _ = rng.choice(CITIES)

        def make() -> str:
            street = rng.choice(STREETS[country])
            return f"{rng.randrange(1, 200)} {street}|{postal}{rng.randrange(10, 99)}"

        line1, postal_code = self._unique(make).split("|")
        address = {"line1": line1, "city": city, "postal_code": postal_code, "country": country}
        if rng.random() < 0.3:
            address["line2"] = f"Apt {rng.randrange(1, 40)}"
        return address

    def phone(self, address: dict[str, str]) -> str:
        prefix = next(c[3] for c in CITIES if c[2] == address["country"])
        return self._unique(lambda: f"{prefix} {self.rng.randrange(10**6, 10**7)}")

    def email(self, domain: str | None = None) -> str:
        rng = self.rng
        at = domain or rng.choice(MAIL_DOMAINS)

        def make() -> str:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            return f"{first}.{last}{rng.randrange(1, 1000)}@{at}"

        return self._unique(make)

    def user_agent(self) -> str:
        return self.rng.choice(USER_AGENTS)

    def person(
        self, *, network: str, address: dict[str, str], email_domain: str | None = None
    ) -> Person:
        """A new account of its own person (own email, phone, device and card) living at
        `address` and going online from `network`."""
        return Person(
            customer_id=self.customer_id(),
            email=self.email(email_domain),
            phone=self.phone(address),
            address=address,
            device_id=self.device(),
            ip=self.ip_in(network),
            user_agent=self.user_agent(),
            card=self.card(),
            own_code=self.referral_code(),
        )

    def stranger(self) -> Person:
        """A new account of a person living alone: their own network and address too."""
        return self.person(network=self.network(), address=self.address())

    def alias(self, of: Person, *, email_domain: str | None = None) -> Person:
        """Another account of the same person: a new id, email and referral code, on the
        same device, network, card and address."""
        return replace(
            of,
            customer_id=self.customer_id(),
            email=self.email(email_domain),
            phone=self.phone(of.address),
            own_code=self.referral_code(),
        )
