"""The guard's online anomaly model for one merchant: the net for what the hard rules do not
know. Pure (River and the standard library): `model_store.py` keeps it in PostgreSQL.

`MinMaxScaler` then `HalfSpaceTrees` score an intent's vector (`vector.py`) in [0, 1], higher
being stranger. Why not River's `QuantileFilter` around the trees:
- The model must never learn from held events that no reviewer has cleared (poisoning), nor
  let them stretch the scaler, so the scaler and the trees learn only from cleared intents,
  while the threshold is calibrated on the scores of every intent the model saw. The filter
  learns all three from the same calls.
- The threshold is the merchant's alert rate (reviewer capacity), which is part of the
  program and may change; a histogram of scores answers any rate, where the filter's P²
  quantile is fixed to one `q` when it is built.

Intents held by a hard rule never reach the model (nor its threshold): a member's first held
intent opens a review case, and every later intent of theirs is held by `member_under_review`,
so a flood from one account moves nothing. Until `warmup` intents have been seen, the model
only learns; the rules alone decide.

Reviewers' decisions teach an online logistic regression (`StandardScaler |
LogisticRegression`): the held intents of a cleared case as honest, of a confirmed case as
abusive, and one cleared intent in `NEGATIVE_EVERY` as honest (positive-unlabelled learning:
what the rules and reviewers found, and what ordinary intents look like). Once it has
`MIN_LABELS` labels, `MIN_ABUSIVE_LABELS` of them abusive, it carries `CLASSIFIER_WEIGHT` of
the score: it learns what the rules and the reviewers know and spots its near neighbours,
where the trees only know what is rare.

Every step is deterministic (a fixed seed), so replaying the same intents in the same order
rebuilds the same model: `seen` counts them (intents and reviewed cases) and `chain` is a
running SHA-256 over their keys and outcomes, which tells a model that saw exactly those
steps from one that did not.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from river import anomaly, compose, linear_model, optim, preprocessing

# What the model is, in a line (for reports and benchmarks).
MODEL_DESCRIPTION = "MinMaxScaler | HalfSpaceTrees + StandardScaler | LogisticRegression"
MODEL_SEED = 20261203
N_TREES = 10
TREE_HEIGHT = 8
WINDOW_SIZE = 250
SCORE_BINS = 1000
SCORE_WINDOW = 5_000  # the threshold follows the latest scores, as the model changes
MIN_SCORES = 200  # scores counted before the threshold means anything
# The classifier: reviewers' decisions label held intents; one cleared intent in
# `NEGATIVE_EVERY` is taken as honest, so that it learns what ordinary intents look like.
NEGATIVE_EVERY = 5
MIN_LABELS = 200
MIN_ABUSIVE_LABELS = 20
CLASSIFIER_WEIGHT = 0.8  # of the score, once the classifier is ready; the trees have the rest
LEARNING_RATE = 0.05


@dataclass
class ScoreHistogram:
    """How often each of the latest `SCORE_WINDOW` scores fell in each of `SCORE_BINS` bins
    over [0, 1]."""

    counts: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)
    latest: list[int] = field(default_factory=list)  # their bins, a ring from `next_slot`
    next_slot: int = 0

    @property
    def total(self) -> int:
        return len(self.latest)

    def add(self, score: float) -> None:
        index = _bin(score)
        self.counts[index] += 1
        if len(self.latest) < SCORE_WINDOW:
            self.latest.append(index)
            return
        self.counts[self.latest[self.next_slot]] -= 1
        self.latest[self.next_slot] = index
        self.next_slot = (self.next_slot + 1) % SCORE_WINDOW

    def among_top(self, score: float, alert_rate: float) -> bool:
        """Whether `score` is at or above `threshold(alert_rate)`: its bin and all above it
        hold at most `alert_rate` of the scores (one C-level sum, not a walk of the bins)."""
        return sum(self.counts[_bin(score) :]) <= alert_rate * self.total

    def threshold(self, alert_rate: float) -> float:
        """The lowest score whose bin and all above it hold at most `alert_rate` of the scores
        seen: scores at or above it are alerts."""
        allowed = alert_rate * self.total
        above = 0
        for index in range(SCORE_BINS - 1, -1, -1):
            above += self.counts[index]
            if above > allowed:
                return (index + 1) / SCORE_BINS
        return 0.0


def _bin(score: float) -> int:
    return min(SCORE_BINS - 1, max(0, math.floor(score * SCORE_BINS)))


class Assessment(NamedTuple):
    score: float
    scaled: dict[str, float]  # the vector in the range the scaler had learned ({}: nothing yet)


@dataclass
class GuardModel:
    """One merchant's model (see the module)."""

    scaler: preprocessing.MinMaxScaler = field(default_factory=preprocessing.MinMaxScaler)
    trees: anomaly.HalfSpaceTrees = field(
        default_factory=lambda: anomaly.HalfSpaceTrees(
            n_trees=N_TREES, height=TREE_HEIGHT, window_size=WINDOW_SIZE, seed=MODEL_SEED
        )
    )
    classifier: compose.Pipeline = field(
        default_factory=lambda: compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(LEARNING_RATE)),
        )
    )
    scores: ScoreHistogram = field(default_factory=ScoreHistogram)
    seen: int = 0  # intents and reviewed cases observed, in order: the last one's learn_seq
    learned: int = 0  # cleared intents the scaler and trees learned
    labels: int = 0  # intents the classifier learned, with the abusive ones among them
    abusive_labels: int = 0
    chain: bytes = b""

    @property
    def classifier_ready(self) -> bool:
        return self.labels >= MIN_LABELS and self.abusive_labels >= MIN_ABUSIVE_LABELS

    def assess(self, vector: dict[str, float]) -> Assessment:
        """How suspect the intent is, in [0, 1]: how strange to the trees (0 before they have
        learned anything), and once reviewers have labelled enough, mostly how abusive to
        the classifier."""
        if not self.learned:
            return Assessment(0.0, {})
        scaled = self.scaler.transform_one(vector)
        strange = float(self.trees.score_one(scaled))
        if not self.classifier_ready:
            return Assessment(strange, scaled)
        abusive = float(self.classifier.predict_proba_one(vector).get(True, 0.0))
        return Assessment(CLASSIFIER_WEIGHT * abusive + (1 - CLASSIFIER_WEIGHT) * strange, scaled)

    def score(self, vector: dict[str, float]) -> float:
        return self.assess(vector).score

    @property
    def scoring(self) -> bool:
        """Whether the trees score yet: they score every intent 0 until their first window of
        learned intents is full, and those zeros would drag the threshold to nothing."""
        return self.learned >= WINDOW_SIZE

    def is_alert(self, score: float, *, alert_rate: float, warmup: int) -> bool:
        """Whether the score is among the `alert_rate` strangest, once warm."""
        return (
            self.seen >= warmup
            and self.scores.total >= MIN_SCORES
            and self.scores.among_top(score, alert_rate)
        )

    def observe(
        self, key: str, vector: dict[str, float], assessed: Assessment, cleared: bool
    ) -> int:
        """Count the intent's score (once the trees score), and learn it if it was cleared;
        its `learn_seq`. The trees learn the intent as the scaler placed it when it was
        assessed (one transform per intent, not two)."""
        if self.scoring:
            self.scores.add(assessed.score)
        if cleared:
            self.scaler.learn_one(vector)
            self.trees.learn_one(assessed.scaled or self.scaler.transform_one(vector))
            self.learned += 1
            if self.learned % NEGATIVE_EVERY == 0:
                self._label(vector, abusive=False)
        self.seen += 1
        self.chain = next_chain(self.chain, key, cleared)
        return self.seen

    def learn_case(self, key: str, held: Sequence[dict[str, float]], abusive: bool) -> int:
        """Learn a reviewed case's held intents as the reviewer labelled them; its `learn_seq`."""
        for vector in held:
            self._label(vector, abusive=abusive)
        self.seen += 1
        self.chain = next_chain(self.chain, key, abusive)
        return self.seen

    def _label(self, x: dict[str, float], *, abusive: bool) -> None:
        self.classifier.learn_one(x, abusive)
        self.labels += 1
        self.abusive_labels += abusive

    @staticmethod
    def strongest(vector: Mapping[str, float], assessed: Assessment, count: int) -> list[str]:
        """The keys whose values lie highest in the range the model has learned: what makes
        the intent stand out, for a reviewer."""
        scaled = assessed.scaled
        ranked = sorted(
            (key for key, value in vector.items() if value > 0 and not key.startswith("source.")),
            key=lambda key: (-scaled.get(key, 0.0), key),
        )
        return ranked[:count]


def next_chain(chain: bytes, key: str, cleared: bool) -> bytes:
    """The running digest after one more intent."""
    return hashlib.sha256(chain + key.encode() + (b"\x01" if cleared else b"\x00")).digest()
