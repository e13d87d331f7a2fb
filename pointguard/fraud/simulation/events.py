"""The events of a simulated stream: each a webhook body's type, time and data, with the truth
the simulation knows about it (`kind`: "honest", or the attack it belongs to). The builders
give each type the data and signals a storefront sends (docs/webhooks.md#events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pointguard.fraud.simulation.catalogue import Order
from pointguard.fraud.simulation.identities import Person

HONEST = "honest"
# A checkout spending points: a storefront calls the GraphQL API for it, not a webhook.
CHECKOUT = "checkout.redeemed"
SPEND_ALL = "all"


@dataclass(frozen=True)
class SimEvent:
    at: datetime
    type: str
    data: dict[str, Any]
    kind: str = HONEST


def signup(
    person: Person, at: datetime, kind: str, *, referral_code: str | None = None
) -> SimEvent:
    data: dict[str, Any] = {"customer_id": person.customer_id, **person.signals()}
    data["own_referral_code"] = person.own_code
    if referral_code is not None:
        data["referral_code"] = referral_code
    return SimEvent(at, "customer.created", data, kind)


def paid(
    person: Person, at: datetime, order: Order, kind: str, *, referral_code: str | None = None
) -> SimEvent:
    data: dict[str, Any] = {"customer_id": person.customer_id, **order.data()}
    if referral_code is not None:
        data["referral_code"] = referral_code
    data.update(person.signals(), payment_fingerprint=person.card)
    return SimEvent(at, "order.paid", data, kind)


def refunded(person: Person, at: datetime, order: Order, kind: str) -> SimEvent:
    """The whole order refunded, line by line."""
    lines = [{"line_id": x["line_id"], "quantity": x["quantity"]} for x in order.lines]
    data = {"customer_id": person.customer_id, "order_id": order.order_id, "lines": lines}
    return SimEvent(at, "order.refunded", data, kind)


def partly_refunded(
    person: Person, at: datetime, order: Order, line: dict[str, Any], kind: str
) -> SimEvent:
    """One line of the order refunded (a return of one item)."""
    lines = [{"line_id": line["line_id"], "quantity": line["quantity"]}]
    data = {"customer_id": person.customer_id, "order_id": order.order_id, "lines": lines}
    return SimEvent(at, "order.refunded", data, kind)


def cancelled(person: Person, at: datetime, order: Order, kind: str) -> SimEvent:
    data = {"customer_id": person.customer_id, "order_id": order.order_id}
    return SimEvent(at, "order.cancelled", data, kind)


def review(
    person: Person, at: datetime, review_id: str, sku: str, rating: int, kind: str
) -> SimEvent:
    data = {
        "customer_id": person.customer_id,
        "review_id": review_id,
        "sku": sku,
        "rating": rating,
        **person.device_signals(),
    }
    return SimEvent(at, "review.published", data, kind)


def checkout(person: Person, at: datetime, points: int | str, kind: str) -> SimEvent:
    return SimEvent(at, CHECKOUT, {"customer_id": person.customer_id, "points": points}, kind)
