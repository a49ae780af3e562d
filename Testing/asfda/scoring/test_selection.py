import numpy as np
import pytest
from asfda.scoring.selection import greedy_select, k_center_greedy, rank_normalize


def unit(*vector):
    v = np.asarray(vector, dtype=float)
    return v / np.linalg.norm(v)


def test_rank_normalize_is_percentile_rank_with_shared_ties():
    assert rank_normalize([10.0, 30.0, 20.0]).tolist() == [0.0, 1.0, 0.5]
    assert rank_normalize([1.0, 1.0, 2.0]).tolist() == [0.25, 0.25, 1.0]
    assert rank_normalize([7.0]).tolist() == [1.0]
    assert rank_normalize([1e-9, 1e9]).tolist() == [0.0, 1.0]  # scale does not matter


def test_greedy_selection_recomputes_diversity_after_each_pick():
    # a and b are near-duplicates with the highest base scores; c is different with a lower score
    embeddings = np.stack([unit(1, 0), unit(1, 0.05), unit(0, 1)])
    base = np.array([1.0, 0.95, 0.6])
    picks = greedy_select(
        base, embeddings, np.empty((0, 2)), budget=2, w_div=1.0, last_served=[None] * 3, names=["a", "b", "c"]
    )
    # first pick: S empty, D = 1 for all, a wins on base; second: b is next to a (D rank 0), c far (rank 1)
    assert [p.index for p in picks] == [0, 2]
    assert picks[0].diversity == 1.0
    assert picks[1].score == pytest.approx(0.6 + 1.0)
    # without diversity, the near-duplicate would have been taken
    plain = greedy_select(base, embeddings, np.empty((0, 2)), 2, 0.0, [None] * 3, ["a", "b", "c"])
    assert [p.index for p in plain] == [0, 1]


def test_labelled_cases_lower_the_value_of_similar_cases():
    embeddings = np.stack([unit(1, 0), unit(0, 1)])
    labelled = np.stack([unit(1, 0.01)])
    picks = greedy_select(np.array([0.5, 0.5]), embeddings, labelled, 1, 1.0, [None, None], ["a", "b"])
    assert picks[0].index == 1


def test_ties_go_to_the_least_recently_served_case():
    embeddings = np.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    base = np.zeros(3)
    picks = greedy_select(base, embeddings, np.empty((0, 2)), 1, 1.0, [100.0, None, 50.0], ["a", "b", "c"])
    assert picks[0].index == 1  # never served
    picks = greedy_select(base, embeddings, np.empty((0, 2)), 1, 1.0, [100.0, 70.0, 50.0], ["a", "b", "c"])
    assert picks[0].index == 2  # served longest ago


def test_k_center_greedy_takes_the_farthest_case_each_time():
    embeddings = np.stack([unit(1, 0), unit(0.99, 0.1), unit(0, 1), unit(-1, 0.1)])
    picks = k_center_greedy(embeddings, np.stack([unit(1, 0)]), budget=2)
    assert picks == [3, 2]
