"""The simulated storefront stream: the same seed gives the same bytes, every line is a body the
server's own decoder accepts, every attack kind appears with its label even in a small stream,
households share a network and an address but never a card, referral codes are handed out
before they are used, and time only moves forward."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from pointguard.fraud.simulation.attacks import ATTACKS
from pointguard.fraud.simulation.events import CHECKOUT, HONEST, SPEND_ALL
from pointguard.fraud.simulation.sender import StreamInvalid, read_stream
from pointguard.fraud.simulation.stream import StreamSettings, stream_lines
from pointguard.plugin.payloads import envelope_of, json_document, to_program_event

SMALL = StreamSettings(customers=40, days=30, seed=3)


def texts(settings: StreamSettings) -> list[str]:
    return [line.text for line in stream_lines(settings)]


@cache
def lines(settings: StreamSettings = SMALL) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(text) for text in texts(settings))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_another_stream():
    first = texts(SMALL)
    assert first == texts(StreamSettings(customers=40, days=30, seed=3))
    assert first != texts(StreamSettings(customers=40, days=30, seed=4))
    shifted = StreamSettings(customers=40, days=30, seed=3, start=datetime(2026, 6, 1, tzinfo=UTC))
    assert json.loads(texts(shifted)[0])["timestamp"].startswith("2026-06-01")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_body_sent_is_one_the_server_decodes(seed):
    settings = StreamSettings(customers=60, days=45, seed=seed)
    deliveries, checkouts = read_stream(texts(settings))
    assert checkouts == sum(1 for line in lines(settings) if line["type"] == CHECKOUT)
    assert len({d.webhook_id for d in deliveries}) == len(deliveries)
    for delivery in deliveries:
        envelope = envelope_of(json_document(delivery.body))
        assert to_program_event(delivery.webhook_id, envelope) is not None, delivery.body
        assert b"label" not in delivery.body
    for line in lines(settings):
        if line["type"] == CHECKOUT:
            points = line["data"]["points"]
            assert points == SPEND_ALL or (isinstance(points, int) and points > 0)
            assert set(line["data"]) == {"customer_id", "points"}


def test_every_attack_kind_is_there_with_its_label_in_a_small_stream():
    tiny = StreamSettings(customers=10, days=30, seed=9)
    kinds = Counter(line["label"]["kind"] for line in lines(tiny))
    assert set(kinds) == {HONEST, *ATTACKS}
    for line in lines(tiny):
        assert line["label"]["abusive"] == (line["label"]["kind"] != HONEST)


def test_attacks_are_a_few_percent_of_a_realistic_stream():
    big = lines(StreamSettings(customers=1000, days=60, seed=5))
    abusive = sum(line["label"]["abusive"] for line in big)
    assert 0.01 < abusive / len(big) < 0.08
    types = Counter(line["type"] for line in big)
    assert types["order.paid"] > 2 * types["customer.created"]
    assert 0.005 < types["order.refunded"] / types["order.paid"] < 0.08
    assert types["review.published"] > 0 and types[CHECKOUT] > 0


def test_time_moves_forward_inside_the_period():
    stamps = [line["timestamp"] for line in lines()]
    assert stamps == sorted(stamps)
    assert SMALL.start.isoformat().replace("+00:00", "Z") <= stamps[0]
    assert stamps[-1] < "2026-02-04"  # 30 days from 2026-01-05


def test_honest_households_share_a_network_and_address_but_never_a_card():
    honest = [line for line in lines() if line["label"]["kind"] == HONEST]
    homes: dict[str, set[str]] = defaultdict(set)
    networks: dict[str, set[str]] = defaultdict(set)
    for line in honest:
        if line["type"] == "customer.created":
            home = json.dumps(line["data"]["shipping_address"], sort_keys=True)
            homes[home].add(line["data"]["customer_id"])
            network = ipaddress.ip_network(f"{line['data']['ip']}/24", strict=False)
            networks[home].add(str(network))
    households = [home for home, members in homes.items() if len(members) > 1]
    assert households, "no household of two or more in the stream"
    assert all(len(networks[home]) == 1 for home in households)
    cards: dict[str, set[str]] = defaultdict(set)
    for line in honest:
        if line["type"] == "order.paid":
            cards[line["data"]["payment_fingerprint"]].add(line["data"]["customer_id"])
    assert cards and all(len(buyers) == 1 for buyers in cards.values())


def test_referral_codes_are_handed_out_before_they_are_used_and_households_refer():
    given: dict[str, str] = {}
    used = 0
    for line in lines():
        data = line["data"]
        code = data.get("referral_code")
        if code is not None:
            assert code in given, f"{code} used before it was given"
            assert given[code] != data["customer_id"]
            used += 1
        if line["type"] == "customer.created":
            assert data["own_referral_code"] not in given
            given[data["own_referral_code"]] = data["customer_id"]
    assert used > 0


def test_self_referrals_come_from_one_device_and_card():
    tiny = lines(StreamSettings(customers=10, days=30, seed=9))
    orders = [
        line["data"]
        for line in tiny
        if line["label"]["kind"] == "self_referral" and line["type"] == "order.paid"
    ]
    assert len(orders) >= 4
    assert len({o["payment_fingerprint"] for o in orders}) == 1
    assert len({o["device_id"] for o in orders}) == 1
    assert len({o["email"] for o in orders}) == len(orders)


def test_the_sender_waits_for_a_customers_and_their_referrers_earlier_events():
    stream = [
        {"type": "customer.created", "timestamp": "2026-01-05T10:00:00Z",
         "data": {"customer_id": "ann", "own_referral_code": "ANN"}},
        {"type": CHECKOUT, "timestamp": "2026-01-05T10:01:00Z",
         "data": {"customer_id": "ann", "points": "all"}},
        {"type": "customer.created", "timestamp": "2026-01-05T11:00:00Z",
         "data": {"customer_id": "bob", "referral_code": "ANN"}},
    ]  # fmt: skip
    deliveries, checkouts = read_stream([json.dumps(line) for line in stream] + [""])
    assert checkouts == 1
    assert [d.after for d in deliveries] == [("ann",), ("bob", "ann")]
    assert [d.line_number for d in deliveries] == [1, 3]
    assert deliveries[0].webhook_id.startswith("sim-")  # none given: derived from the body


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not json", "line 2 is not JSON"),
        ('{"type": "order.paid"}', "line 2 is not an object with type, timestamp and data"),
        ('{"type": "x", "timestamp": "t", "data": []}', "line 2: data is not an object"),
    ],
)
def test_a_line_that_is_not_an_event_is_refused_naming_it(text, said):
    good = json.dumps({"type": "t", "timestamp": "2026-01-05T00:00:00Z", "data": {}})
    with pytest.raises(StreamInvalid, match=said):
        read_stream([good, text])
