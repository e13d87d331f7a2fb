"""What the simulated shop sells and when it runs promotions: a small catalogue in EUR minor
units, seasonal promotion days (more orders, discounted lines), and baskets whose value is
log-normal (most orders hold one or two lines, a few hold many)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

CURRENCY = "EUR"
VAT_PERCENT = 20
FREE_SHIPPING_FROM_MINOR = 5000
SHIPPING_MINOR = 495
MAX_LINES_PER_ORDER = 8
# Lines per order: log-normal around 1.5 (median), rounded, at least one.
LINES_MU, LINES_SIGMA = math.log(1.5), 0.55
PROMOTION_ORDER_FACTOR = 3.0  # how much likelier an order is on a promotion day
PROMOTION_DISCOUNT_PERCENTS = (10, 15, 20, 30)


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    price_minor: int


CATALOGUE = (
    Product("BOOT-7", "shoes", 8999),
    Product("SNEAK-2", "shoes", 6999),
    Product("SANDAL-1", "shoes", 3499),
    Product("TEE-BASIC", "apparel", 1499),
    Product("HOODIE-3", "apparel", 4999),
    Product("JEANS-5", "apparel", 5999),
    Product("JACKET-9", "apparel", 12999),
    Product("SOCKS-3PK", "apparel", 999),
    Product("BAG-TOTE", "accessories", 2499),
    Product("BELT-4", "accessories", 2999),
    Product("CAP-1", "accessories", 1999),
    Product("WATCH-2", "accessories", 14999),
    Product("MUG-6", "home", 1299),
    Product("LAMP-3", "home", 3999),
    Product("THROW-1", "home", 4499),
    Product("CANDLE-2", "home", 1799),
    Product("SERUM-1", "beauty", 2899),
    Product("CREAM-4", "beauty", 1999),
    Product("BOOK-COOK", "books", 2499),
    Product("BOOK-NOVEL", "books", 1599),
)
# Cheap things sell more often than dear ones.
WEIGHTS = tuple(1 / math.sqrt(p.price_minor) for p in CATALOGUE)

# (month, first day, last day) of each yearly promotion, whatever the year.
PROMOTIONS = (
    (1, 7, 14),  # winter sales
    (2, 10, 14),  # Valentine's
    (3, 20, 22),  # spring
    (5, 8, 10),
    (6, 24, 30),  # summer sales
    (7, 1, 7),
    (9, 1, 3),  # back to school
    (11, 24, 30),  # Black Friday week
    (12, 10, 20),  # Christmas
)


def is_promotion_day(day: date) -> bool:
    return any(day.month == month and first <= day.day <= last for month, first, last in PROMOTIONS)


@dataclass(frozen=True)
class Order:
    """A paid order's content: its lines as the webhook sends them, shipping and tax."""

    order_id: str
    lines: list[dict[str, Any]]
    shipping_minor: int
    tax_minor: int

    def data(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "currency": CURRENCY,
            "lines": self.lines,
            "shipping_minor": self.shipping_minor,
            "tax_minor": self.tax_minor,
        }

    @property
    def goods_minor(self) -> int:
        return sum(x["quantity"] * x["unit_price_minor"] - x["discount_minor"] for x in self.lines)


def line(line_id: int, product: Product, quantity: int, discount_percent: int) -> dict[str, Any]:
    discount = product.price_minor * quantity * discount_percent // 100
    return {
        "line_id": str(line_id),
        "sku": product.sku,
        "category": product.category,
        "quantity": quantity,
        "unit_price_minor": product.price_minor,
        "discount_minor": discount,
    }


def order_of(order_id: str, lines: list[dict[str, Any]]) -> Order:
    """The order of these lines, with the shop's shipping and VAT."""
    goods = sum(x["quantity"] * x["unit_price_minor"] - x["discount_minor"] for x in lines)
    shipping = 0 if goods >= FREE_SHIPPING_FROM_MINOR else SHIPPING_MINOR
    return Order(order_id, lines, shipping, goods * VAT_PERCENT // (100 + VAT_PERCENT))


def basket(rng: random.Random, order_id: str, *, promotion: bool) -> Order:
    """A shopper's basket: a log-normal number of distinct products, mostly one of each,
    discounted on promotion days."""
    count = min(MAX_LINES_PER_ORDER, max(1, round(rng.lognormvariate(LINES_MU, LINES_SIGMA))))
    products: list[Product] = []
    while len(products) < count:
        product = rng.choices(CATALOGUE, WEIGHTS)[0]
        if product not in products:
            products.append(product)
    discount = rng.choice(PROMOTION_DISCOUNT_PERCENTS) if promotion else 0
    lines = [
        line(i, product, 1 if rng.random() < 0.85 else rng.randint(2, 3), discount)
        for i, product in enumerate(products, start=1)
    ]
    return order_of(order_id, lines)


def order_just_above(rng: random.Random, order_id: str, threshold_minor: int) -> Order:
    """An order whose goods come to just above `threshold_minor`: cheap lines added until it
    is reached (what someone splitting a purchase to clear a minimum sends)."""
    cheap = sorted(CATALOGUE, key=lambda p: p.price_minor)[:6]
    lines: list[dict[str, Any]] = []
    total = 0
    while total < threshold_minor:
        product = rng.choice(cheap)
        lines.append(line(len(lines) + 1, product, 1, 0))
        total += product.price_minor
    return order_of(order_id, lines)
