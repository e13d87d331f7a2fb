"""The checked readers every sender's adapter reads its payload with, and what else they share:
prices as minor units, the dedupe id, and the canonical event's envelope.

Every field is read through one of these readers, never with `payload[...]`, `str()` or
`int()` on what the sender sent: a field of the wrong type, absent when required, or beyond
the limits of `payloads.py` raises `InvalidPayload` naming its path in the sender's payload
(`$.line_items[0].quantity`), so that no payload can make a webhook fail with a 500.

The fraud guard's signals (IP, user agent, email, phone, shipping address) are read the same
way, with `signals` leaving out those the sender did not send.

Prices arrive as decimal amounts in major units; they become minor units with the order's
currency exponent (2 unless the currency is one of the zero-decimal ones below).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from pointguard.clock import wall_clock
from pointguard.errors import InvalidPayload, TopicMismatch
from pointguard.plugin.payloads import (
    MAX_AMOUNT_MINOR,
    MAX_EMAIL_CHARS,
    MAX_LINES,
    MAX_QUANTITY,
    MAX_TEXT_CHARS,
    MAX_USER_AGENT_CHARS,
    check_email,
    check_ip,
    check_time,
)

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})
# The longest amount or time we parse: what a real one needs, with room for zeros.
MAX_NUMBER_CHARS = 40
# Exact arithmetic on any amount of MAX_NUMBER_CHARS (the default context keeps 28 digits).
EXACT = Context(prec=MAX_NUMBER_CHARS + 2)

Canonical = dict[str, Any]
# What every adapter returns: the dedupe id, and the canonical event (None: record as ignored).
Adapted = tuple[str, Canonical | None]
# An optional reader: `(payload, key, where)` to the value, or None if absent.
Reader = Callable[[Mapping[str, Any], str, str], str | None]


def dedupe_id(sender: str, *parts: str) -> str:
    """The inbox id of a sender's webhook: what a retry of the same delivery repeats and a new
    event does not (each adapter's docstring says which parts, and why). Built here only, so
    that every sender's ids have one shape: `{sender}:{part}:{part}...`. Every part comes from
    what the sender signed, never from a header it did not: whoever captured a body could
    change such a header and have the body applied again."""
    return ":".join((sender, *parts))


def topic_mismatch(topic: str, field: str, shows: str) -> TopicMismatch:
    """The refusal of a body sent under a topic it is not: what `field` shows instead."""
    message = f"the body sent as {topic[:50]!r} is not one: {field} {shows}"
    return TopicMismatch(message, field=field)


def check_customer(topic: str, payload: Mapping[str, Any]) -> None:
    """Refuse unless the body sent as `topic` is a customer: it has the `email` field that
    every customer carries (null for a customer known by phone alone), and neither the
    `line_items` of an order nor the `order_id` of a refund or a fulfillment. So no captured
    body of another kind becomes a signup."""
    for key in ("line_items", "order_id"):
        if key in payload:
            raise topic_mismatch(topic, f"$.{key}", "is there, so it is not a customer")
    if "email" not in payload:
        raise topic_mismatch(topic, "$.email", "is missing, so it is not a customer")


def canonical_event(event_type: str, at: datetime | None, data: Canonical) -> Canonical:
    """The canonical event of `event_type` at `at` (now if the sender gave no time)."""
    return {"type": event_type, "timestamp": (at or wall_clock()).isoformat(), "data": data}


def need(payload: Mapping[str, Any], key: str, where: str = "$") -> Any:
    """`payload[key]`; InvalidPayload naming `{where}.{key}` if it is absent or empty."""
    value = payload.get(key)
    if value is None or value == "":
        raise InvalidPayload(f"{where}.{key} is missing", field=f"{where}.{key}")
    return value


def text(payload: Mapping[str, Any], key: str, where: str = "$") -> str:
    """A required id or label: a string, or a whole number (ids often are), of at most
    `MAX_TEXT_CHARS`."""
    return _text(need(payload, key, where), f"{where}.{key}")


def optional_text(
    payload: Mapping[str, Any], key: str, where: str = "$", max_chars: int = MAX_TEXT_CHARS
) -> str | None:
    """`text` (of at most `max_chars`), or None if the field is absent, null or empty."""
    value = payload.get(key)
    return None if value is None or value == "" else _text(value, f"{where}.{key}", max_chars)


def optional_ip(payload: Mapping[str, Any], key: str, where: str = "$") -> str | None:
    """An optional IPv4 or IPv6 address (`payloads.check_ip`)."""
    value = optional_text(payload, key, where)
    return None if value is None else check_ip(value, f"{where}.{key}")


def optional_email(payload: Mapping[str, Any], key: str, where: str = "$") -> str | None:
    """An optional email address (`payloads.check_email`) of at most `MAX_EMAIL_CHARS`."""
    value = optional_text(payload, key, where, MAX_EMAIL_CHARS)
    return None if value is None else check_email(value, f"{where}.{key}")


def optional_user_agent(payload: Mapping[str, Any], key: str, where: str = "$") -> str | None:
    """An optional `User-Agent` string, of at most `MAX_USER_AGENT_CHARS`."""
    return optional_text(payload, key, where, MAX_USER_AGENT_CHARS)


def first(
    payload: Mapping[str, Any],
    keys: tuple[str, ...],
    where: str = "$",
    read: Reader = optional_text,
) -> str | None:
    """The value of the first of `keys` that has one, read with `read`; None if none has. A
    dotted key reads into nested objects (`client_details.browser_ip`)."""
    for key in keys:
        *parents, last = key.split(".")
        parent, at = payload, where
        for step in parents:
            parent = obj(parent.get(step), f"{at}.{step}")
            at = f"{at}.{step}"
        value = read(parent, last, at)
        if value is not None:
            return value
    return None


def address(
    payload: Mapping[str, Any], key: str, where: str, names: Mapping[str, tuple[str, ...]]
) -> Canonical | None:
    """The canonical address (`line1`, `line2`, `city`, `postal_code`, `region`, `country`) of
    the sender's address object at `key`: each field from the first of the sender's `names`
    for it that has a value (`first`). None if the object is absent or has none."""
    found = obj(payload.get(key), f"{where}.{key}")
    lines = {field: first(found, keys, f"{where}.{key}") for field, keys in names.items()}
    return signals(**lines) or None


def signals(**found: object) -> Canonical:
    """The fields of `found` that have a value: what a sender did not send is left out of the
    canonical event, not sent as null."""
    return {name: value for name, value in found.items() if value is not None}


def quantity(payload: Mapping[str, Any], key: str, where: str) -> int:
    """A required count of units: a whole number from 1 to `MAX_QUANTITY`."""
    value = need(payload, key, where)
    field = f"{where}.{key}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPayload(f"{field} is not a whole number", field=field)
    if not 1 <= value <= MAX_QUANTITY:
        raise InvalidPayload(f"{field} is not between 1 and {MAX_QUANTITY:,}", field=field)
    return value


def amount(payload: Mapping[str, Any], key: str, currency: str, where: str = "$") -> int:
    """An optional price (absent: 0) in minor units; see `minor_units`."""
    return minor_units(payload.get(key), currency, f"{where}.{key}")


def minor_units(value: object, currency: str, field: str) -> int:
    """A decimal amount in major units (`"19.99"`, or a JSON number) as integer minor units
    (1999); None is 0. Refused unless it is a whole number of minor units from 0 to
    `MAX_AMOUNT_MINOR`."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload(f"{field} is not an amount", field=field)
    spelled = str(value)
    try:
        if len(spelled) > MAX_NUMBER_CHARS:
            raise InvalidOperation
        major = Decimal(spelled)
        exponent = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
        # Bounded before scaling: no exponent the sender chose reaches the arithmetic.
        bounded = major.is_finite() and -MAX_NUMBER_CHARS < major.adjusted() < 20
        minor = major.scaleb(exponent, EXACT) if bounded else None
    except InvalidOperation as error:
        raise InvalidPayload(f"{field} is not an amount: {spelled[:50]!r}", field=field) from error
    if minor is None or not 0 <= minor <= MAX_AMOUNT_MINOR:
        raise InvalidPayload(
            f"{field} is not between 0 and {MAX_AMOUNT_MINOR:,} minor units: {spelled!r}",
            field=field,
        )
    if minor != minor.to_integral_value():
        raise InvalidPayload(
            f"{field} is not a whole number of minor units: {spelled!r}", field=field
        )
    return int(minor)


def currency_code(payload: Mapping[str, Any], key: str, where: str = "$") -> str:
    """A required ISO 4217 code: three letters, returned in capitals."""
    value = text(payload, key, where)
    if not (len(value) == 3 and value.isascii() and value.isalpha()):
        raise InvalidPayload(f"{where}.{key} is not a currency code", field=f"{where}.{key}")
    return value.upper()


def moment(payload: Mapping[str, Any], keys: tuple[str, ...], where: str = "$") -> datetime | None:
    """The time in the first of `keys` the payload has (None if none): an ISO 8601 string,
    read as UTC without an offset (WooCommerce's `*_gmt` fields have none)."""
    for key in keys:
        value = payload.get(key)
        if value is None or value == "":
            continue
        field = f"{where}.{key}"
        try:
            if not isinstance(value, str) or len(value) > MAX_NUMBER_CHARS:
                raise ValueError
            at = datetime.fromisoformat(value)
        except ValueError as error:
            raise InvalidPayload(f"{field} is not an ISO 8601 time", field=field) from error
        return check_time(at if at.tzinfo else at.replace(tzinfo=UTC), field)
    return None


def obj(value: object, where: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, {} if it is absent; InvalidPayload if it is not."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{where} is not an object", field=where)
    return value


def objects(value: object, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The objects of a JSON list (at most `MAX_LINES`), each with its path; [] if absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(f"{where} is not a list", field=where)
    if len(value) > MAX_LINES:
        raise InvalidPayload(f"{where} has more than {MAX_LINES} entries", field=where)
    found = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):  # null too: an entry is never absent
            raise InvalidPayload(f"{where}[{i}] is not an object", field=f"{where}[{i}]")
        found.append((f"{where}[{i}]", item))
    return found


def listed_value(
    payload: Mapping[str, Any], key: str, label: str, wanted: str, where: str = "$"
) -> str | None:
    """The `value` of the entry whose `label` field is `wanted`, in the list of small objects at
    `key` (Shopify's note attributes `{name, value}`, Saleor's metadata `{key, value}`)."""
    for at, entry in objects(payload.get(key), f"{where}.{key}"):
        if entry.get(label) == wanted:
            return optional_text(entry, "value", at)
    return None


def _text(value: object, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # within MAX_JSON_INT (payloads.json_document): a few digits
    if not isinstance(value, str):
        raise InvalidPayload(f"{field} is not a string", field=field)
    if len(value) > max_chars:
        raise InvalidPayload(f"{field} is longer than {max_chars} characters", field=field)
    return value
