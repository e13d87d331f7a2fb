"""Honest customers: households who sign up, buy, return a few things, review some, spend
their points, and refer each other.

A household shares a home network (one /24) and a shipping address; each member has their own
email, phone, device and card. The first member signs up on their own (now and then referred
by a friend from another household); the others join later with a household member's referral
code, given at signup or with their first order. Each customer orders at a rate of their own
(log-normal, so a few order often and most rarely), more on promotion days.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pointguard.fraud.simulation import events
from pointguard.fraud.simulation.catalogue import PROMOTION_ORDER_FACTOR, basket, is_promotion_day
from pointguard.fraud.simulation.events import HONEST, SPEND_ALL, SimEvent
from pointguard.fraud.simulation.identities import Identities, Person
from pointguard.fraud.simulation.period import DAY, Period

HOUSEHOLD_SIZES = (1, 2, 3, 4)
HOUSEHOLD_WEIGHTS = (55, 27, 12, 6)
SIGNUP_SPAN = 0.85  # founders sign up over the first 85 % of the period
JOIN_AFTER_MAX_DAYS = 20  # a household member joins within this many days of their referrer
FRIEND_REFERRAL_SHARE = 0.08  # founders referred by a customer of another household
CODE_AT_SIGNUP_SHARE = 0.6  # referees who give the code at signup (else with the first order)
# Orders per 30 days: log-normal with a median of 1, capped.
ORDER_RATE_MU, ORDER_RATE_SIGMA, MAX_ORDERS_PER_30_DAYS = math.log(1.0), 0.8, 12.0
FIRST_ORDER_SOON_SHARE = 0.55  # customers whose first order follows the signup within hours
MOBILE_SHARE = 0.2  # orders placed from a phone on a carrier's network
CANCEL_SHARE = 0.01
REFUND_SHARE = 0.03  # of orders, some or all of it returned
FULL_REFUND_SHARE = 0.6  # of those, the whole order
REVIEW_SHARE = 0.08
RATINGS, RATING_WEIGHTS = (1, 2, 3, 4, 5), (5, 7, 13, 30, 45)
CHECKOUT_SHARE = 0.07  # of later orders, paid partly with points
CHECKOUT_POINTS = (100, 200, 300, 500, SPEND_ALL)
# Carriers put many unrelated phones behind one address block (CGNAT).
MOBILE_NETWORKS = ("37.171.12", "80.215.40", "46.114.9", "151.38.77")


@dataclass(frozen=True)
class Joined:
    person: Person
    at: datetime


def honest_stream(
    rng: random.Random, ids: Identities, period: Period, customers: int
) -> list[SimEvent]:
    """The events of `customers` honest customers over `period`."""
    stream: list[SimEvent] = []
    joined: list[Joined] = []
    while len(joined) < customers:
        size = min(rng.choices(HOUSEHOLD_SIZES, HOUSEHOLD_WEIGHTS)[0], customers - len(joined))
        network, address = ids.network(), ids.address()
        founder = ids.person(network=network, address=address)
        at = period.moment(rng, int(rng.random() * SIGNUP_SPAN * period.days))
        friend = _earlier(rng, joined, at) if rng.random() < FRIEND_REFERRAL_SHARE else None
        household = [Joined(founder, at)]
        stream += _customer(rng, ids, period, household[0], friend)
        for _ in range(size - 1):
            referrer = rng.choice(household)
            delay = timedelta(hours=rng.uniform(1, 24 * JOIN_AFTER_MAX_DAYS))
            at = min(referrer.at + delay, period.end - DAY)
            if at <= referrer.at:
                break
            member = Joined(ids.person(network=network, address=address), at)
            household.append(member)
            stream += _customer(rng, ids, period, member, referrer.person)
        joined += household
    return stream


def _earlier(rng: random.Random, joined: list[Joined], at: datetime) -> Person | None:
    before = [j.person for j in joined if j.at < at]
    return rng.choice(before) if before else None


def _customer(
    rng: random.Random, ids: Identities, period: Period, who: Joined, referrer: Person | None
) -> list[SimEvent]:
    """One customer's signup and everything they do until the period ends."""
    person, at = who.person, who.at
    code = referrer.own_code if referrer is not None else None
    at_signup = rng.random() < CODE_AT_SIGNUP_SHARE
    stream = [events.signup(person, at, HONEST, referral_code=code if at_signup else None)]
    rate_per_day = (
        min(rng.lognormvariate(ORDER_RATE_MU, ORDER_RATE_SIGMA), MAX_ORDERS_PER_30_DAYS) / 30
    )
    times: list[datetime] = []
    if rng.random() < FIRST_ORDER_SOON_SHARE:
        times.append(at + timedelta(minutes=rng.uniform(5, 600)))
    for day in range(period.day_of(at) + 1, period.days):
        factor = PROMOTION_ORDER_FACTOR if is_promotion_day(period.date_of(day)) else 1.0
        if rng.random() < rate_per_day * factor:
            moment = period.moment(rng, day)
            if not times or moment > times[-1]:
                times.append(moment)
    for n, ordered_at in enumerate(times):
        if not period.holds(ordered_at):
            break
        first_code = code if n == 0 and not at_signup else None
        stream += _order(rng, ids, period, person, ordered_at, n, first_code)
    return stream


def _order(
    rng: random.Random,
    ids: Identities,
    period: Period,
    person: Person,
    at: datetime,
    nth: int,
    referral_code: str | None,
) -> list[SimEvent]:
    """An order and what may follow it: a cancellation, a return, a review."""
    promotion = is_promotion_day(at.date())
    order = basket(rng, ids.order_id(), promotion=promotion)
    buyer = person
    if rng.random() < MOBILE_SHARE:
        network = rng.choice(MOBILE_NETWORKS)
        buyer = replace(person, ip=ids.ip_in(network), device_id=f"{person.device_id}-m")
    stream = []
    if nth > 0 and rng.random() < CHECKOUT_SHARE:
        points = rng.choice(CHECKOUT_POINTS)
        stream.append(events.checkout(person, at - timedelta(seconds=30), points, HONEST))
    stream.append(events.paid(buyer, at, order, HONEST, referral_code=referral_code))
    later: SimEvent | None = None
    draw = rng.random()
    if draw < CANCEL_SHARE:
        later = events.cancelled(person, at + timedelta(hours=rng.uniform(0.2, 6)), order, HONEST)
    elif draw < CANCEL_SHARE + REFUND_SHARE:
        when = at + timedelta(days=rng.uniform(2, 25))
        if rng.random() < FULL_REFUND_SHARE or len(order.lines) == 1:
            later = events.refunded(person, when, order, HONEST)
        else:
            item = rng.choice(order.lines)
            later = events.partly_refunded(person, when, order, item, HONEST)
    elif draw < CANCEL_SHARE + REFUND_SHARE + REVIEW_SHARE:
        when = at + timedelta(days=rng.uniform(4, 20))
        sku = rng.choice(order.lines)["sku"]
        rating = rng.choices(RATINGS, RATING_WEIGHTS)[0]
        later = events.review(person, when, ids.review_id(), sku, rating, HONEST)
    if later is not None and period.holds(later.at):
        stream.append(later)
    return stream
