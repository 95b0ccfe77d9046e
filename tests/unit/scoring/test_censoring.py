"""The censoring arithmetic: Harrell's concordance index against its O(n^2) definition, the
censored lower bound, and Kaplan-Meier against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from ticketeval.scoring.censoring import (
    concordance_counts,
    concordance_index,
    kaplan_meier,
    lower_bound_errors,
    survival_at,
)


def brute_force_counts(
    times: np.ndarray, predictions: np.ndarray, observed: np.ndarray
) -> tuple[int, int, int]:
    """Harrell's definition, pair by pair: i's time observed and strictly shorter than j's."""
    concordant = tied = comparable = 0
    for i in range(len(times)):
        if not observed[i]:
            continue
        for j in range(len(times)):
            if times[i] < times[j]:
                comparable += 1
                concordant += int(predictions[i] < predictions[j])
                tied += int(predictions[i] == predictions[j])
    return concordant, tied, comparable


@pytest.mark.parametrize("size", [0, 1, 2, 3, 17, 120, 400])
@pytest.mark.parametrize("block", [1, 3, 64, 512])
def test_concordance_counts_equal_the_double_loop_on_censored_logs_with_ties(
    size: int, block: int
) -> None:
    rng = np.random.default_rng(size * 1000 + block)
    for _ in range(3):
        # Few distinct values: many ties in time and in prediction, which the sweep's blocks
        # must keep whole.
        times = rng.integers(0, 25, size).astype(float)
        predictions = rng.integers(0, 8, size).astype(float)
        observed = rng.random(size) < 0.6
        assert concordance_counts(times, predictions, observed, block=block) == (
            brute_force_counts(times, predictions, observed)
        )


def test_concordance_index_reads_predicted_times_not_risks() -> None:
    times = np.array([1.0, 2.0, 3.0, 4.0])
    observed = np.array([True, True, False, True])
    assert concordance_index(times, times * 10, observed) == 1.0
    assert concordance_index(times, -times, observed) == 0.0
    # A constant prediction ties every pair: one half.
    assert concordance_index(times, np.ones(4), observed) == 0.5
    # The censored row at 3 is never the shorter of a pair: swapping its prediction with the
    # longest row's changes only the pairs in which it is the longer.
    by_hand = brute_force_counts(times, np.array([1.0, 5.0, 2.0, 4.0]), observed)
    assert concordance_index(times, np.array([1.0, 5.0, 2.0, 4.0]), observed) == pytest.approx(
        (by_hand[0] + by_hand[1] / 2) / by_hand[2]
    )


def test_concordance_index_without_comparable_pairs_is_none_and_missing_rows_are_left_out() -> None:
    assert concordance_index(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([0, 0])) is None
    assert concordance_index(np.array([]), np.array([]), np.array([], dtype=bool)) is None
    times = np.array([1.0, np.nan, 3.0])
    predictions = np.array([1.0, 2.0, np.nan])
    assert concordance_index(times, predictions, np.array([1, 1, 1])) is None
    with pytest.raises(ValueError, match="same length"):
        concordance_counts(np.ones(2), np.ones(3), np.ones(2, dtype=bool))


def test_lower_bound_is_the_overdue_part_of_each_prediction() -> None:
    age = np.array([10.0, 10.0, 0.0])
    predicted = np.array([4.0, 20.0, 5.0])
    assert lower_bound_errors(age, predicted).tolist() == [6.0, 0.0, 0.0]
    # Whatever the ticket's true time to close beyond its age, the bound holds.
    rng = np.random.default_rng(0)
    for _ in range(100):
        truth = age + rng.exponential(50, size=3)
        assert (lower_bound_errors(age, predicted) <= np.abs(truth - predicted)).all()


def test_kaplan_meier_matches_a_hand_computation() -> None:
    # Times 1, 2(censored), 3, 3, 5(censored): S(1) = 4/5, S(3) = 4/5 * (1 - 2/3).
    times = np.array([1.0, 2.0, 3.0, 3.0, 5.0])
    events = np.array([True, False, True, True, False])
    curve = kaplan_meier(times, events)
    assert curve[0].tolist() == [1.0, 3.0]
    assert curve[1] == pytest.approx([0.8, 0.8 / 3])
    assert survival_at(curve, np.array([0.5, 1.0, 2.5, 3.0, 9.0])) == pytest.approx(
        [1.0, 0.8, 0.8, 0.8 / 3, 0.8 / 3]
    )
    assert survival_at(curve, np.array([1.0, 3.0]), just_before=True) == pytest.approx([1.0, 0.8])
    # A censoring tied with an event stays at risk at that time.
    tied = kaplan_meier(np.array([2.0, 2.0, 4.0]), np.array([True, False, True]))
    assert tied[1].tolist() == pytest.approx([2 / 3, 0.0])
