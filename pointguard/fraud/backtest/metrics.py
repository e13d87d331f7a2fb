"""The backtest's quality measures, on plain values. Pure.

Each measure takes `(score, abusive)` pairs, one per decision, and returns None where it has no
meaning (no abusive or no honest decision to compare): a figure is never made up.

- `roc_auc`: the chance that an abusive decision scores above an honest one, ties counting
  half (the Mann-Whitney statistic; 0.5 is a coin, 1.0 perfect).
- `pr_auc`: average precision, the area under the precision-recall steps taken one distinct
  score at a time, highest first (tied scores enter together, as a threshold would take them).
- `precision_at_budget`: the precision of the top `budget` share of decisions by score, as if
  the guard held exactly that share; a cut inside a run of tied scores takes the run's abusive
  share for the places left, the expected precision of a random tie-break.
- `share`: a part of a whole, None of nothing.
- `events_to_detect`: per kind, how many of its events went by before its first held one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby

Scored = tuple[float, bool]  # (score, abusive)


def roc_auc(scored: Sequence[Scored]) -> float | None:
    positives = sum(1 for _, abusive in scored if abusive)
    negatives = len(scored) - positives
    if not positives or not negatives:
        return None
    rank_sum, rank = 0.0, 0  # ranks from 1, lowest score first; a tie shares its mean rank
    for _, run in _runs(scored, descending=False):
        size, abusive = len(run), sum(run)
        rank_sum += abusive * (rank + (size + 1) / 2)
        rank += size
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def pr_auc(scored: Sequence[Scored]) -> float | None:
    positives = sum(1 for _, abusive in scored if abusive)
    if not positives:
        return None
    area, taken, caught = 0.0, 0, 0
    for _, run in _runs(scored, descending=True):
        taken += len(run)
        found = sum(run)
        caught += found
        area += found / positives * (caught / taken)
    return area


def precision_at_budget(scored: Sequence[Scored], budget: float) -> float | None:
    """`budget` is a share (0.03 for 3 %); at least one decision is taken."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a share in (0, 1], got {budget}")
    if not scored:
        return None
    places = max(1, round(budget * len(scored)))
    taken, caught = 0, 0.0
    for _, run in _runs(scored, descending=True):
        room = places - taken
        if room <= 0:
            break
        size = min(room, len(run))
        caught += sum(run) * size / len(run)
        taken += size
    return caught / places


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def events_to_detect(events: Iterable[tuple[str, bool]]) -> dict[str, int | None]:
    """`events` are `(kind, held)` in stream order; for each kind (in order of first
    appearance), how many of its events passed before the first held one, None if none was."""
    passed: dict[str, int] = {}
    detected: dict[str, int | None] = {}
    for kind, held in events:
        detected.setdefault(kind, None)
        if detected[kind] is not None:
            continue
        if held:
            detected[kind] = passed.get(kind, 0)
        else:
            passed[kind] = passed.get(kind, 0) + 1
    return detected


def _runs(scored: Iterable[Scored], *, descending: bool) -> list[tuple[float, list[bool]]]:
    """The decisions grouped by equal score, in score order: (score, their labels)."""
    ordered = sorted(scored, key=lambda pair: pair[0], reverse=descending)
    return [
        (score, [abusive for _, abusive in run])
        for score, run in groupby(ordered, key=lambda pair: pair[0])
    ]
