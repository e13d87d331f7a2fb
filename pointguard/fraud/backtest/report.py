"""The figures of one replay: the guard's decisions against the stream's labels, as a mapping
ready for JSON, and the same in words.

A decision is one reward-bearing intent the guard decided (a row of `fraud_decisions`); its
label is its event's (a referrer's reward takes the label of the referee's order that earned
it). An event is held when any of its decisions was. Points are counted when earned; the held
ones are those stopped before their release: held by the guard (whatever the simulated
reviewers later decided), or forfeited, still pending, by a confirmed case
(`cases_cleared`, `cases_confirmed` count the reviewers' decisions). Unlabelled lines are
replayed but not measured: only `unlabelled_events` counts them. docs/fraud.md#backtest lists
every figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pointguard.fraud.backtest.metrics import (
    events_to_detect,
    pr_auc,
    precision_at_budget,
    roc_auc,
    share,
)
from pointguard.fraud.backtest.replay import CheckoutResult, Decision, Replayed, Spent
from pointguard.fraud.backtest.stream import Checkout, Label, Line

ALERT_BUDGET = 0.03  # the share of decisions a merchant's reviewers can look at
DIGITS = 4


def figures(done: Replayed, *, budget: float = ALERT_BUDGET) -> dict[str, Any]:
    """Every figure of the replay (see the module and docs/fraud.md#backtest)."""
    label_of = {line.webhook_id: line.label for line in done.lines if line.label is not None}
    stream_events = [line for line in done.lines if not isinstance(line.what, Checkout)]
    events = [(line, line.label) for line in stream_events if line.label is not None]
    checkouts = [(c, c.line.label) for c in done.checkouts if c.line.label is not None]
    decisions = [
        (d, label_of[d.event_id].abusive) for d in done.decisions if d.event_id in label_of
    ]
    held = sum(d.held for d, _ in decisions)
    scored = [(d.score, abusive) for d, abusive in decisions]
    held_events = {d.event_id for d in done.decisions if d.held}
    abusive = [d for d, is_abusive in decisions if is_abusive]
    honest = [d for d, is_abusive in decisions if not is_abusive]
    honest_rewarded = {d.event_id for d in honest}
    detect = events_to_detect(
        (label.kind, line.webhook_id in held_events) for line, label in events if label.abusive
    )
    abusive_checkouts = [c for c, label in checkouts if label.abusive]
    return {
        "merchant_id": done.merchant_id,
        "events": len(stream_events),
        "abusive_events": sum(label.abusive for _, label in events),
        "unlabelled_events": len(stream_events) - len(events),
        "refused_events": len(done.refused),
        "decisions": len(decisions),
        "abusive_decisions": len(abusive),
        "held_decisions": held,
        "held_share": _round(share(held, len(decisions))),
        "precision_of_holds": _round(share(sum(d.held for d in abusive), held)),
        "roc_auc": _round(roc_auc(scored)),
        "pr_auc": _round(pr_auc(scored)),
        "alert_budget": budget,
        "precision_at_budget": _round(precision_at_budget(scored, budget) if scored else None),
        "abusive_points": _points(abusive),
        "abusive_points_held": _stopped_points(abusive),
        "abusive_points_held_share": _round(share(_stopped_points(abusive), _points(abusive))),
        "abusive_points_redeemed": _spent(abusive_checkouts),
        "abusive_checkouts_prevented": sum(
            c.spent == Spent.UNDER_REVIEW for c in abusive_checkouts
        ),
        "honest_events_held_share": _round(
            share(len(honest_rewarded & held_events), len(honest_rewarded))
        ),
        "honest_points_held": _stopped_points(honest),
        "checkouts": dict(sorted(Counter(c.spent.value for c in done.checkouts).items())),
        "cases_cleared": done.cases_cleared,
        "cases_confirmed": done.cases_confirmed,
        "kinds": {
            kind: _kind(kind, detected, events, abusive, checkouts)
            for kind, detected in sorted(detect.items())
        },
        "honest": {
            "events": sum(not label.abusive for _, label in events),
            "rewarded_events": len(honest_rewarded),
            "held_events": len(honest_rewarded & held_events),
            "points": _points(honest),
            "points_held": _stopped_points(honest),
            "held_by": _held_by(honest),
        },
        "batches": done.batches,
        "upkeep_passes": done.upkeep_passes,
        "seconds": round(done.seconds, 1),
    }


def _kind(
    kind: str,
    detected: int | None,
    events: list[tuple[Line, Label]],
    abusive: list[Decision],
    checkouts: list[tuple[CheckoutResult, Label]],
) -> dict[str, Any]:
    ids = {line.webhook_id for line, label in events if label.kind == kind}
    mine = [d for d in abusive if d.event_id in ids]
    spent = [c for c, label in checkouts if label.kind == kind]
    return {
        "events": len(ids),
        "events_to_detect": detected,
        "decisions": len(mine),
        "held_decisions": sum(d.held for d in mine),
        "points": _points(mine),
        "points_held": _stopped_points(mine),
        "points_redeemed": _spent(spent),
        "held_by": _held_by(mine),
    }


def _points(decisions: list[Decision]) -> int:
    return sum(d.points for d in decisions)


def _stopped_points(decisions: list[Decision]) -> int:
    """Points held, or forfeited by a confirmed case, before they were released."""
    return sum(d.points for d in decisions if d.stopped)


def _held_by(decisions: list[Decision]) -> dict[str, int]:
    """How many decisions each rule held."""
    return dict(sorted(Counter(d.decided_by for d in decisions if d.held).items()))


def _spent(checkouts: list[CheckoutResult]) -> int:
    return sum(c.points for c in checkouts if c.spent == Spent.REDEEMED)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def in_words(found: dict[str, Any], echo: Callable[[str], object]) -> None:
    """The figures as a reader takes them in: the headline, then a line per attack kind."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    echo(
        f"backtest on merchant {found['merchant_id']}: {found['events']} events"
        f" ({found['abusive_events']} abusive), {found['decisions']} decisions"
        f" ({found['abusive_decisions']} abusive), {found['held_decisions']} held"
        f" ({pct(found['held_share'])}), {found['refused_events']} events refused;"
        f" {found['seconds']} s"
    )
    echo(
        f"ROC AUC {num(found['roc_auc'])}, PR AUC {num(found['pr_auc'])}, precision of holds"
        f" {pct(found['precision_of_holds'])}, precision at a {found['alert_budget']:.0%}"
        f" alert budget {pct(found['precision_at_budget'])}"
    )
    echo(
        f"abusive points held {found['abusive_points_held']} of {found['abusive_points']}"
        f" ({pct(found['abusive_points_held_share'])}); abusive points redeemed"
        f" {found['abusive_points_redeemed']}; abusive checkouts refused under review"
        f" {found['abusive_checkouts_prevented']}"
    )
    honest = found["honest"]
    echo(
        f"honest events held {honest['held_events']} of {honest['rewarded_events']} rewarded"
        f" ({pct(found['honest_events_held_share'])}), {honest['points_held']} points"
        + "".join(f"; {rule} {n}" for rule, n in honest["held_by"].items())
    )
    checkouts = ", ".join(f"{n} {spent}" for spent, n in found["checkouts"].items())
    echo(f"checkouts: {checkouts or 'none'}")
    echo(f"reviewers: {found['cases_cleared']} cases cleared, {found['cases_confirmed']} confirmed")
    if not found["kinds"]:
        return
    width = max(len(kind) for kind in found["kinds"])
    echo(f"{'attack':<{width}}  events  to detect  points held/total  redeemed  held by")
    for kind, k in found["kinds"].items():
        detect = "never" if k["events_to_detect"] is None else str(k["events_to_detect"])
        rules = ", ".join(f"{rule} {n}" for rule, n in k["held_by"].items()) or "-"
        echo(
            f"{kind:<{width}}  {k['events']:>6}  {detect:>9}"
            f"  {k['points_held']:>8}/{k['points']:<8}  {k['points_redeemed']:>8}  {rules}"
        )
