"""A labelled stream, read for the backtest: one JSON object per line, a webhook body (`type`,
`timestamp`, `data`) with its `webhook_id` and `label` (`{"abusive": bool, "kind": str}`), or a
`checkout.redeemed` line (`data: {customer_id, points}`, points a whole number or "all").
A line without a label (or with a null one) is replayed but neither measured nor reviewed.

Bodies are decoded exactly as the server decodes them (`plugin.payloads.envelope_of`, then
`to_program_event`); a type the program ignores is kept, with no event, so that it still counts
for its kind. Pure. A line that is not one of these raises `StreamInvalid` naming its number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pointguard.errors import PointGuardError
from pointguard.fraud.simulation.events import CHECKOUT, SPEND_ALL
from pointguard.plugin.payloads import envelope_of, to_program_event
from pointguard.program.events import Event

MAX_LINES = 2_000_000  # a backtest holds its stream in memory


class StreamInvalid(ValueError):
    """A line of the stream that is not a labelled event; the message names the line."""


@dataclass(frozen=True)
class Label:
    abusive: bool
    kind: str  # "honest", or the attack's name


@dataclass(frozen=True)
class Checkout:
    """A checkout spending points: `points`, or every available point when None."""

    member_id: str
    points: int | None


@dataclass(frozen=True)
class Line:
    number: int  # in the file, from 1
    webhook_id: str
    at: datetime
    label: Label | None  # None: unlabelled
    what: Event | Checkout | None  # None: a type the program ignores

    @property
    def event(self) -> Event | None:
        return None if isinstance(self.what, Checkout) else self.what


def read_stream(texts: Iterable[str]) -> list[Line]:
    """Every line, in time order; ties keep the file's order, so each member's events stay in
    the order they happened. Blank lines are skipped."""
    lines = []
    for number, text in enumerate(texts, start=1):
        if number > MAX_LINES:
            raise StreamInvalid(f"more than {MAX_LINES:,} lines")
        if text.strip():
            lines.append(_line(number, text))
    lines.sort(key=lambda line: line.at)
    return lines


def _line(number: int, text: str) -> Line:
    try:
        found = json.loads(text)
    except json.JSONDecodeError as error:
        raise StreamInvalid(f"line {number} is not JSON: {error}") from error
    if not isinstance(found, dict) or not {"type", "timestamp", "data"} <= found.keys():
        raise StreamInvalid(f"line {number} is not an object with type, timestamp, data")
    body = {"type": found["type"], "timestamp": found["timestamp"], "data": found["data"]}
    webhook_id = found.get("webhook_id") or _id_of(body)
    try:
        envelope = envelope_of(body)
        what: Event | Checkout | None = (
            _checkout(number, envelope.data)
            if envelope.type == CHECKOUT
            else to_program_event(str(webhook_id), envelope)
        )
    except PointGuardError as error:
        raise StreamInvalid(f"line {number}: {error}") from error
    return Line(
        number, str(webhook_id), envelope.timestamp, _label(number, found.get("label")), what
    )


def _id_of(body: dict[str, Any]) -> str:
    """A line without a webhook id gets the one `sim send` would give it."""
    said = json.dumps(body, separators=(",", ":")).encode()
    return "sim-" + hashlib.sha256(said).hexdigest()[:24]


def _label(number: int, label: Any) -> Label | None:
    if label is None:
        return None
    if (
        not isinstance(label, dict)
        or not isinstance(label.get("abusive"), bool)
        or not isinstance(label.get("kind"), str)
    ):
        raise StreamInvalid(f'line {number}: label is not {{"abusive": bool, "kind": str}}')
    return Label(label["abusive"], label["kind"])


def _checkout(number: int, data: Any) -> Checkout:
    member, points = data.get("customer_id"), data.get("points")
    if not isinstance(member, str) or not member:
        raise StreamInvalid(f"line {number}: a checkout needs data.customer_id")
    if points == SPEND_ALL:
        return Checkout(member, None)
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise StreamInvalid(f'line {number}: data.points is not a whole number >= 1 or "all"')
    return Checkout(member, points)
