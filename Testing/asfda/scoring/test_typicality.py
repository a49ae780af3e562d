"""Typicality and cluster-then-pick on small hand-made embeddings."""

import numpy as np
import pytest
from asfda.scoring.typicality import centred, cluster_then_pick, typicality


def test_centring_spreads_embeddings_that_share_a_common_component():
    common = np.array([10.0, 0.0, 0.0])
    raw = np.stack([common + [0, 1, 0], common + [0, -1, 0], common + [0, 0, 1]])
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    before = 1 - raw[0] @ raw[1]
    spread = centred(raw)
    after = 1 - spread[0] @ spread[1]
    assert before < 0.03 and after > 1.0  # nearly identical before, opposite after
    assert np.allclose(np.linalg.norm(spread, axis=1), 1.0)


def test_typicality_is_highest_in_the_dense_mode_and_lowest_for_the_outlier():
    dense = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]]
    points = np.array([*dense, [5.0, 5.0]])
    value = typicality(points, neighbours=2)
    assert int(np.argmin(value)) == 4
    assert value[:4].min() > 10 * value[4]


def test_cold_start_picks_one_typical_case_per_mode_never_the_outlier():
    rng = np.random.default_rng(0)
    mode_a = rng.normal([0, 0], 0.05, (6, 2))
    mode_b = rng.normal([3, 3], 0.05, (6, 2))
    outlier = np.array([[20.0, -20.0]])
    points = np.vstack([mode_a, mode_b, outlier])
    picks = cluster_then_pick(points, np.empty((0, 2)), budget=2, neighbours=3, seed=0)
    assert len(picks) == 2 and 12 not in picks
    assert {p < 6 for p in picks} == {True, False}  # one pick in each mode


def test_a_mode_already_labelled_is_not_picked_again():
    rng = np.random.default_rng(1)
    mode_a = rng.normal([0, 0], 0.05, (5, 2))
    mode_b = rng.normal([3, 3], 0.05, (5, 2))
    points = np.vstack([mode_a, mode_b])
    picks = cluster_then_pick(points, np.array([[0.0, 0.0]]), budget=1, neighbours=3, seed=0)
    assert picks[0] >= 5


def test_weights_break_typicality_ties_within_a_cluster():
    points = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    picks = cluster_then_pick(points, np.empty((0, 2)), 1, weights=np.array([0.1, 0.9, 0.5]))
    assert picks == [1]


@pytest.mark.parametrize("budget", [0, 3, 10])
def test_budget_is_capped_by_the_pool(budget):
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    picks = cluster_then_pick(points, np.empty((0, 2)), budget)
    assert len(picks) == min(budget, 3) and len(set(picks)) == len(picks)
