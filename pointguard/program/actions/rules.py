"""Actions, decided: points for what members do beyond buying (signup, birthday, reviews,
shares, profile completion, merchant-defined actions), each with its caps.

A cap counts what the member was already granted of the same action in the event's own UTC
day, its calendar month, and ever, whenever those grants arrived: ties and events sent out of
order count like any other (`apply.py` counts under the member's lock). The one being decided
is allowed while every count is below its cap. A birthday pays once a calendar year, and only
in the birthday month. Pure: `actions/records.py` counts and stores, `apply.py` drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import lot_expiry
from pointguard.program.document.schema import Action, Program
from pointguard.program.events import ActionPerformed
from pointguard.program.intents import EarnIntent


@dataclass(frozen=True)
class ActionCounts:
    today: int = 0
    this_month: int = 0
    this_year: int = 0
    lifetime: int = 0


@dataclass(frozen=True)
class ActionDecision:
    action: Action | None
    reason: str  # why it pays or not, for logs and the event record

    @property
    def pays(self) -> bool:
        return self.action is not None


def decide_action(
    program: Program, event: ActionPerformed, counts: ActionCounts, birthday: date | None
) -> ActionDecision:
    rule = next((a for a in program.actions if a.event == event.action), None)
    if rule is None:
        return ActionDecision(None, f"the program pays nothing for {event.action!r}")
    if event.action == "birthday":
        if birthday is None:
            return ActionDecision(None, "no birthday on record")
        if birthday.month != event.occurred_at.month:
            return ActionDecision(None, "not the birthday month")
        if counts.this_year:
            return ActionDecision(None, "birthday already rewarded this year")
    for cap, count in (
        ("per_day", counts.today),
        ("per_month", counts.this_month),
        ("lifetime", counts.lifetime),
    ):
        limit = getattr(rule, cap)
        if limit is not None and count >= limit:
            return ActionDecision(None, f"{cap} cap of {limit} reached")
    return ActionDecision(rule, "pays")


def action_earns(
    program: Program, event: ActionPerformed, counts: ActionCounts, birthday: date | None
) -> list[EarnIntent]:
    """The earn an action pays, if any: available at once (`birthday` is the one on record;
    a `birthday` event's own date of birth wins)."""
    decision = decide_action(program, event, counts, event.birthday or birthday)
    if decision.action is None:
        return []
    return [
        EarnIntent(
            idempotency_key("action", event.event_id),
            decision.action.points,
            decision.action.description,
            f"action:{event.action}",
            None,
            lot_expiry(program, event.occurred_at),
        )
    ]
