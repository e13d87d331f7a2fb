"""The plugin's one retry schedule, with plain values: no database, no clock."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from pointguard.plugin.retry import RetryPolicy

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(first_s=5, max_s=60)


def test_the_first_attempt_waits_the_first_delay():
    assert POLICY.delay_s(1) == 5.0
    assert POLICY.next_attempt_at(NOW, 1) == NOW + timedelta(seconds=5)


def test_each_attempt_doubles_the_delay():
    assert [POLICY.delay_s(attempts) for attempts in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]


def test_the_delay_stops_at_the_cap():
    assert [POLICY.delay_s(attempts) for attempts in (5, 6, 40)] == [60.0, 60.0, 60.0]


def test_a_huge_attempt_count_neither_overflows_nor_passes_the_cap():
    assert POLICY.delay_s(1000) == 60.0
    assert POLICY.next_attempt_at(NOW, 10**9) == NOW + timedelta(seconds=60)


def test_jitter_spreads_the_delay_within_its_bounds_and_a_seeded_source_repeats_it():
    jittered = RetryPolicy(first_s=5, max_s=60, jitter=0.2)
    delays = [jittered.delay_s(2, random.Random(seed)) for seed in range(200)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(set(delays)) > 1
    assert jittered.delay_s(2, random.Random(7)) == jittered.delay_s(2, random.Random(7))


def test_no_jitter_draws_no_random_number():
    rng = random.Random(1)
    POLICY.delay_s(3, rng)
    assert rng.random() == random.Random(1).random()


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_count_from_one(attempts):
    with pytest.raises(ValueError, match="counts from 1"):
        POLICY.delay_s(attempts)


@pytest.mark.parametrize(
    ("first_s", "max_s", "jitter"), [(0, 10, 0), (10, 5, 0), (1, 10, -0.1), (1, 10, 1.0)]
)
def test_a_policy_that_makes_no_sense_is_refused(first_s, max_s, jitter):
    with pytest.raises(ValueError):
        RetryPolicy(first_s=first_s, max_s=max_s, jitter=jitter)
