"""Stochastic acquisition (power / Gumbel-top-k) on small hand-made score sets."""

import numpy as np
import pytest
from asfda.scoring.stochastic import annealed_temperature, gumbel_top_k


def test_temperature_zero_is_the_deterministic_top_k():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert gumbel_top_k(scores, 2, 0.0, np.random.default_rng(0)) == [1, 3]


def test_draws_follow_power_acquisition_probabilities():
    # with temperature 1, the first pick is score-proportional: 0.75 vs 0.25
    scores = np.array([3.0, 1.0])
    rng = np.random.default_rng(0)
    firsts = [gumbel_top_k(scores, 1, 1.0, rng)[0] for _ in range(4000)]
    assert np.mean(np.array(firsts) == 0) == pytest.approx(0.75, abs=0.03)


def test_an_extreme_outlier_does_not_take_every_pick_when_hot():
    scores = np.array([1.0] + [0.8] * 9)
    rng = np.random.default_rng(1)
    hits = sum(0 in gumbel_top_k(scores, 1, 1.0, rng) for _ in range(500))
    assert 20 < hits < 150  # about 1/8.2 of the draws, not all of them


def test_zero_scores_lose_and_samples_have_no_repeats():
    picks = gumbel_top_k(np.array([0.0, 0.5, 0.0, 0.2]), 3, 1.0, np.random.default_rng(2))
    assert set(picks[:2]) == {1, 3} and len(set(picks)) == 3


def test_annealing_cools_as_labels_accumulate():
    temperatures = [annealed_temperature(1.0, n, 4.0) for n in (0, 4, 12)]
    assert temperatures == [1.0, 0.5, 0.25]
    assert annealed_temperature(2.0, 10, 0.0) == 2.0


def test_negative_or_non_finite_scores_are_refused():
    with pytest.raises(ValueError):
        gumbel_top_k(np.array([0.5, -0.1]), 1, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        gumbel_top_k(np.array([0.5, np.nan]), 1, 1.0, np.random.default_rng(0))
