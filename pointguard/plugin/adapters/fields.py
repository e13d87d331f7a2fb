"""What every sender's adapter reads the same way: required fields, prices, and the canonical
event's envelope.

Prices arrive as decimal amounts in major units; they become minor units with the order's
currency exponent (2 unless the currency is one of the zero-decimal ones below). A required
field that is absent or empty raises `InvalidPayload` naming its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pointguard.errors import InvalidPayload

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})

Canonical = dict[str, Any]


def minor_units(amount: object, currency: str, field: str) -> int:
    """A decimal amount in major units (`"19.99"`) as integer minor units (1999)."""
    try:
        value = Decimal(str(amount if amount is not None else "0"))
    except InvalidOperation as error:
        raise InvalidPayload(f"{field} is not an amount: {amount!r}", field=field) from error
    exponent = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
    minor = value.scaleb(exponent)
    if minor < 0 or minor != minor.to_integral_value():
        raise InvalidPayload(
            f"{field} is not a whole number of minor units: {amount!r}", field=field
        )
    return int(minor)


def canonical_event(event_type: str, at: object, data: Canonical) -> Canonical:
    """The canonical event of `event_type` at `at` (now if the sender gave no time)."""
    timestamp = str(at) if at else datetime.now(UTC).isoformat()
    return {"type": event_type, "timestamp": timestamp, "data": data}


def need(payload: Mapping[str, Any], key: str, where: str = "$") -> Any:
    """`payload[key]`; InvalidPayload naming `{where}.{key}` if it is absent or empty."""
    value = payload.get(key)
    if value is None or value == "":
        raise InvalidPayload(f"{where}.{key} is missing", field=f"{where}.{key}")
    return value


def listed_value(pairs: object, label: str, wanted: str) -> str | None:
    """The `value` of the entry whose `label` field is `wanted`, in a list of small objects
    (Shopify's note attributes `{name, value}`, Saleor's metadata `{key, value}`)."""
    for entry in pairs if isinstance(pairs, list) else []:
        if isinstance(entry, Mapping) and entry.get(label) == wanted:
            return str(entry.get("value"))
    return None
