"""The labelled attacks mixed into a stream: each a function that plays one attacker's
campaign from a random start inside the period, every event labelled with the attack's kind.

- `self_referral`: one person (one device, one card, one home) opens account after account
  with new emails, each referred by their first account, each first order just above the
  referral minimum; then spends everything.
- `sybil_ring`: accounts with their own devices, emails and networks, but paying with one or
  two shared cards and shipping to one drop address, referring each other in a chain.
- `disposable_referral_farm`: one referrer whose referees sign up with throwaway-inbox emails
  from a few proxy networks, each with a small first order.
- `refund_farming`: orders bought and refunded in full days later, points spent in between.
- `order_splitting`: many small orders, each just above the referral minimum, within a day or
  two.
- `review_farming`: a burst of reviews in one day, nearly all five stars, of things not bought.
- `slow_attack`: a self-referral ring spread over weeks, one new account every few days.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from pointguard.fraud.simulation import events
from pointguard.fraud.simulation.catalogue import CATALOGUE, basket, order_just_above
from pointguard.fraud.simulation.events import SPEND_ALL, SimEvent
from pointguard.fraud.simulation.identities import DISPOSABLE_DOMAINS, Identities, Person
from pointguard.fraud.simulation.period import Period

# Goods a referee's first order must reach for the referrer's reward, as attackers assume it
# (a common `min_first_order_minor`); splitters aim at the same mark.
REFERRAL_MIN_MINOR = 2000
SYBIL_SHARED_CARDS = (1, 2)

Attack = Callable[[random.Random, Identities, Period], list[SimEvent]]


def _start(rng: random.Random, period: Period, span_days: int) -> datetime:
    """When a campaign of `span_days` starts: a day on which it ends inside the period, if the
    period is long enough (else the first day; what runs past the end is dropped)."""
    return period.moment(rng, rng.randrange(max(1, period.days - span_days)))


def _minutes(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(minutes=rng.uniform(low, high))


def _inside(period: Period, stream: list[SimEvent]) -> list[SimEvent]:
    """The campaign's events in time order, those within the period: a prefix of them, so
    nothing left refers to an event dropped (a refund to its order, a code to its signup)."""
    return [e for e in sorted(stream, key=lambda e: e.at) if period.holds(e.at)]


def _newcomer(
    rng: random.Random, ids: Identities, period: Period, span_days: int, kind: str
) -> tuple[Person, datetime, list[SimEvent]]:
    """A campaign's one account, signed up when a campaign of `span_days` starts: the person,
    the time and the signup."""
    person, at = ids.stranger(), _start(rng, period, span_days)
    return person, at, [events.signup(person, at, kind)]


def _opening(
    rng: random.Random, ids: Identities, person: Person, at: datetime, kind: str
) -> list[SimEvent]:
    """An account's signup and an ordinary first order soon after."""
    order = basket(rng, ids.order_id(), promotion=False)
    return [
        events.signup(person, at, kind),
        events.paid(person, at + _minutes(rng, 5, 90), order, kind),
    ]


def self_referral(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "self_referral"
    main = ids.stranger()
    at = _start(rng, period, 3)
    stream = _opening(rng, ids, main, at, kind)
    at = stream[-1].at
    for _ in range(rng.randint(3, 6)):
        alias = ids.alias(main)
        at += _minutes(rng, 10, 300)
        stream.append(events.signup(alias, at, kind, referral_code=main.own_code))
        at += _minutes(rng, 5, 60)
        order = order_just_above(rng, ids.order_id(), REFERRAL_MIN_MINOR)
        stream.append(events.paid(alias, at, order, kind))
    stream.append(events.checkout(main, at + _minutes(rng, 60, 600), SPEND_ALL, kind))
    return _inside(period, stream)


def sybil_ring(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "sybil_ring"
    cards = [ids.card() for _ in range(rng.choice(SYBIL_SHARED_CARDS))]
    drop = ids.address()
    at = _start(rng, period, 10)
    stream: list[SimEvent] = []
    previous: Person | None = None
    for _ in range(rng.randint(4, 7)):
        member = replace(ids.person(network=ids.network(), address=drop), card=rng.choice(cards))
        code = previous.own_code if previous is not None else None
        stream.append(events.signup(member, at, kind, referral_code=code))
        ordered = at
        for _ in range(rng.randint(1, 3)):
            ordered += _minutes(rng, 30, 2 * 24 * 60)
            order = basket(rng, ids.order_id(), promotion=False)
            stream.append(events.paid(member, ordered, order, kind))
        previous = member
        at += _minutes(rng, 60, 24 * 60)
    return _inside(period, stream)


def disposable_referral_farm(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "disposable_referral_farm"
    referrer = ids.stranger()
    at = _start(rng, period, 4)
    stream = _opening(rng, ids, referrer, at, kind)
    at = stream[-1].at
    proxies = [ids.network() for _ in range(2)]
    for _ in range(rng.randint(5, 10)):
        domain = rng.choice(DISPOSABLE_DOMAINS)
        referee = ids.person(
            network=rng.choice(proxies), address=ids.address(), email_domain=domain
        )
        at += _minutes(rng, 15, 360)
        stream.append(events.signup(referee, at, kind, referral_code=referrer.own_code))
        order = order_just_above(rng, ids.order_id(), REFERRAL_MIN_MINOR)
        stream.append(events.paid(referee, at + _minutes(rng, 3, 45), order, kind))
    return _inside(period, stream)


def refund_farming(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "refund_farming"
    buyer, at, stream = _newcomer(rng, ids, period, 20, kind)
    for n in range(rng.randint(5, 9)):
        at += _minutes(rng, 12 * 60, 3 * 24 * 60)
        order = basket(rng, ids.order_id(), promotion=False)
        stream.append(events.paid(buyer, at, order, kind))
        if n == 2:
            stream.append(events.checkout(buyer, at + _minutes(rng, 30, 240), SPEND_ALL, kind))
        refund_at = at + _minutes(rng, 24 * 60, 4 * 24 * 60)
        stream.append(events.refunded(buyer, refund_at, order, kind))
    return _inside(period, stream)


def order_splitting(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "order_splitting"
    buyer, at, stream = _newcomer(rng, ids, period, 2, kind)
    for _ in range(rng.randint(8, 15)):
        at += _minutes(rng, 10, 180)
        order = order_just_above(rng, ids.order_id(), REFERRAL_MIN_MINOR)
        stream.append(events.paid(buyer, at, order, kind))
    return _inside(period, stream)


def review_farming(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "review_farming"
    writer, at, stream = _newcomer(rng, ids, period, 1, kind)
    for _ in range(rng.randint(10, 25)):
        at += _minutes(rng, 2, 40)
        rating = 5 if rng.random() < 0.9 else 4
        sku = rng.choice(CATALOGUE).sku
        stream.append(events.review(writer, at, ids.review_id(), sku, rating, kind))
    return _inside(period, stream)


def slow_attack(rng: random.Random, ids: Identities, period: Period) -> list[SimEvent]:
    kind = "slow_attack"
    main = ids.stranger()
    at = _start(rng, period, 45)
    stream = _opening(rng, ids, main, at, kind)
    for _ in range(rng.randint(4, 6)):
        alias = ids.alias(main)
        if rng.random() < 0.5:  # a new browser now and then; the card stays
            alias = replace(alias, device_id=ids.device(), user_agent=ids.user_agent())
        at += _minutes(rng, 4 * 24 * 60, 10 * 24 * 60)
        stream.append(events.signup(alias, at, kind, referral_code=main.own_code))
        order = order_just_above(rng, ids.order_id(), REFERRAL_MIN_MINOR)
        stream.append(events.paid(alias, at + _minutes(rng, 60, 2 * 24 * 60), order, kind))
    return _inside(period, stream)


ATTACKS: dict[str, Attack] = {
    "self_referral": self_referral,
    "sybil_ring": sybil_ring,
    "disposable_referral_farm": disposable_referral_farm,
    "refund_farming": refund_farming,
    "order_splitting": order_splitting,
    "review_farming": review_farming,
    "slow_attack": slow_attack,
}
