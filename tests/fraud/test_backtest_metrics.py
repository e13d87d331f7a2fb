"""The backtest's measures on small tables whose answers are known by hand: ROC and PR areas
(ties, one class only), precision at a budget (a cut inside a tie), shares, and the events
each attack kind passed before its first hold."""

import pytest

from pointguard.fraud.backtest.metrics import (
    events_to_detect,
    pr_auc,
    precision_at_budget,
    roc_auc,
    share,
)

# The textbook table: scores 0.1, 0.4, 0.35, 0.8 for labels no, no, yes, yes.
TEXTBOOK = [(0.1, False), (0.4, False), (0.35, True), (0.8, True)]


def test_roc_auc_counts_the_pairs_an_abusive_decision_wins():
    assert roc_auc(TEXTBOOK) == pytest.approx(0.75)  # 3 of the 4 (abusive, honest) pairs
    assert roc_auc([(0.9, True), (0.1, False)]) == 1.0
    assert roc_auc([(0.1, True), (0.9, False)]) == 0.0


def test_roc_auc_counts_a_tie_as_half():
    assert roc_auc([(1.0, True), (1.0, False)]) == 0.5
    # Hard-rule scores: 2 of 3 abusive held, 1 of 3 honest held.
    held = [(1.0, True), (1.0, True), (0.0, True), (1.0, False), (0.0, False), (0.0, False)]
    # pairs: held abusive beat 2 clear honest each (4), tie the held honest (2 halves);
    # the clear abusive ties 2 clear honest (2 halves): (4 + 1 + 1) / 9
    assert roc_auc(held) == pytest.approx(6 / 9)


def test_pr_auc_is_average_precision_over_distinct_scores():
    # Down the scores: 0.8 yes (P 1, R 1/2), 0.4 no, 0.35 yes (P 2/3, R 1): 1/2 + 1/3
    assert pr_auc(TEXTBOOK) == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)
    # A tie enters as one step: the held run of 3 holds 2 of 3 abusive (P 2/3, R 2/3), then
    # everything (P 1/2, R 1).
    held = [(1.0, True), (1.0, True), (0.0, True), (1.0, False), (0.0, False), (0.0, False)]
    assert pr_auc(held) == pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 1 / 2)


def test_areas_need_both_classes():
    assert roc_auc([]) is None
    assert roc_auc([(0.3, True), (0.9, True)]) is None
    assert roc_auc([(0.3, False), (0.9, False)]) is None
    assert pr_auc([(0.3, False), (0.9, False)]) is None
    assert pr_auc([]) is None
    assert pr_auc([(0.3, True), (0.9, True)]) == 1.0  # every decision abusive: precision 1


def test_precision_at_budget_takes_the_top_share_by_score():
    scored = [(0.9, True), (0.8, False), (0.7, True), (0.1, False)]
    assert precision_at_budget(scored, 0.25) == 1.0  # the top one
    assert precision_at_budget(scored, 0.5) == 0.5
    assert precision_at_budget(scored, 0.75) == pytest.approx(2 / 3)
    assert precision_at_budget(scored, 0.01) == 1.0  # at least one decision is taken
    assert precision_at_budget([], 0.03) is None


def test_precision_at_budget_cutting_a_tie_takes_its_abusive_share():
    # 2 held abusive, then 98 cleared of which 49 abusive; a 10 % budget takes the 2 held and
    # 8 places of the cleared run, expected half abusive: (2 + 4) / 10.
    scored = [(1.0, True)] * 2 + [(0.0, True)] * 49 + [(0.0, False)] * 49
    assert precision_at_budget(scored, 0.10) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="budget"):
        precision_at_budget(scored, 0)


def test_share_of_nothing_is_none():
    assert share(3, 4) == 0.75
    assert share(0, 4) == 0.0
    assert share(0, 0) is None


def test_events_to_detect_counts_each_kinds_events_before_its_first_hold():
    stream = [
        ("self_referral", False),
        ("review_farming", False),
        ("self_referral", False),
        ("self_referral", True),
        ("self_referral", False),  # after the first hold: no longer counted
        ("sybil_ring", True),
        ("review_farming", False),
    ]
    assert events_to_detect(stream) == {
        "self_referral": 2,
        "review_farming": None,  # never held
        "sybil_ring": 0,  # its first event held
    }
    assert events_to_detect([]) == {}
