"""The query candidates for pools with rare hard modes (scoring/coverage.py) on hand-made score sets."""

import numpy as np
import pytest
from asfda.config import QueryConfig, QueryStrategy
from asfda.scoring.case_scores import CaseScores
from asfda.scoring.coverage import (
    cluster_then_difficulty,
    relative_knowledge_gap,
    relative_knowledge_gap_picks,
)
from asfda.scoring.query import rank_pool

NO_LABELS = np.empty((0, 2))


def site_pool():
    """Two tight clusters of routine cases (6 each) and one rare far cluster (3): embeddings, difficulty.

    In the rare cluster the hardest case (14) sits at its edge, so the most typical member (12) is another.
    """
    rng = np.random.default_rng(0)
    routine_a = rng.normal([0.0, 0.0], 0.05, (6, 2))
    routine_b = rng.normal([3.0, 0.0], 0.05, (6, 2))
    rare = np.array([[0.0, 6.0], [0.05, 6.05], [0.4, 6.4]])
    embeddings = np.vstack([routine_a, routine_b, rare])
    difficulty = np.array([0.10, 0.20, 0.15, 0.12, 0.11, 0.13] + [0.30, 0.21, 0.22, 0.25, 0.24, 0.23])
    difficulty = np.concatenate([difficulty, [0.50, 0.60, 0.90]])
    return embeddings, difficulty


def test_cluster_then_difficulty_covers_the_rare_cluster_with_its_hardest_case():
    embeddings, difficulty = site_pool()
    picks = cluster_then_difficulty(embeddings, NO_LABELS, difficulty, budget=3, neighbours=3)
    assert picks[:2] in ([1, 6], [6, 1])  # the two routine clusters first (largest first), their hardest
    assert picks[2] == 14  # then the rare cluster, by its hardest case
    typical = cluster_then_difficulty(embeddings, NO_LABELS, difficulty, budget=3, mix=0.0, neighbours=3)
    assert typical[2] in (12, 13) and typical[2] != 14  # mix 0 is typiclust: the rare cluster's typical case


def test_a_labelled_cluster_is_covered_and_the_rare_one_comes_next():
    embeddings, difficulty = site_pool()
    labelled = np.array([[0.0, 0.0], [3.0, 0.0]])  # one case of each routine cluster labelled
    picks = cluster_then_difficulty(embeddings, labelled, difficulty, budget=1, neighbours=3)
    assert picks == [14]


def test_the_rank_product_between_typical_and_difficult():
    # the larger cluster: a typical easy centre, a difficult edge (4), a case fairly typical and difficult (3)
    points = np.array(
        [[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.05, 0.05], [0.3, 0.3], [10.0, 10.0], [10.01, 10]]
    )
    difficulty = np.array([0.1, 0.11, 0.12, 0.8, 0.9, 0.5, 0.55])
    assert cluster_then_difficulty(points, NO_LABELS, difficulty, 1, mix=1.0, neighbours=2) == [4]
    assert cluster_then_difficulty(points, NO_LABELS, difficulty, 1, mix=0.5, neighbours=2) == [3]


@pytest.mark.parametrize("budget", [0, 4, 40])
def test_cluster_then_difficulty_fills_its_budget_without_repeats(budget):
    embeddings, difficulty = site_pool()
    picks = cluster_then_difficulty(embeddings, NO_LABELS, difficulty, budget, neighbours=3)
    assert len(picks) == min(budget, 15) == len(set(picks))


def test_cluster_then_difficulty_is_determined_by_its_seed():
    rng = np.random.default_rng(4)
    embeddings = rng.normal(0, 1, (30, 3))  # no clear modes: k-means depends on its seed
    difficulty = rng.random(30)
    runs = {
        seed: cluster_then_difficulty(embeddings, np.empty((0, 3)), difficulty, 5, seed=seed)
        for seed in range(6)
    }
    for seed, first in runs.items():
        assert cluster_then_difficulty(embeddings, np.empty((0, 3)), difficulty, 5, seed=seed) == first
    assert len({tuple(picks) for picks in runs.values()}) > 1  # the seed does reach the clustering


def test_cluster_then_difficulty_refuses_a_mix_outside_zero_one_and_mismatched_scores():
    embeddings, difficulty = site_pool()
    with pytest.raises(ValueError, match="mix"):
        cluster_then_difficulty(embeddings, NO_LABELS, difficulty, 1, mix=1.5)
    with pytest.raises(ValueError, match="difficulty scores"):
        cluster_then_difficulty(embeddings, NO_LABELS, difficulty[:-1], 1)


def unit(rows):
    rows = np.asarray(rows, dtype=float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def gap_pool():
    # cases 0 and 1 near-identical with the two largest gaps, 2 and 3 elsewhere with smaller gaps
    embeddings = unit([[1.0, 0.0, 0.0], [1.0, 0.02, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return np.array([0.9, 0.8, 0.3, 0.2]), embeddings


def test_the_relative_gap_of_a_case_drops_once_a_near_identical_case_is_labelled():
    gap, embeddings = gap_pool()
    before = relative_knowledge_gap(gap, embeddings, np.empty((0, 3)))
    after = relative_knowledge_gap(gap, embeddings, unit([[1.0, 0.0, 0.01]]))
    assert before.tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25])  # S empty: the gap's (0, 1] ranks
    assert after[0] < 1e-3 and after[1] < 1e-3  # covered by the labelled twin
    assert after[2:].tolist() == pytest.approx([0.5 * 0.5, 0.25 * 0.5], abs=0.002)  # orthogonal: D ~ 1/2


def test_relative_gap_picks_follow_the_gap_until_the_labelled_set_covers_it():
    gap, embeddings = gap_pool()
    assert relative_knowledge_gap_picks(gap, embeddings, np.empty((0, 3)), 1) == [0]
    assert relative_knowledge_gap_picks(gap, embeddings, unit([[1.0, 0.01, 0.0]]), 1) == [2]


def test_relative_gap_batch_skips_the_twin_of_its_own_first_pick():
    gap, embeddings = gap_pool()
    assert relative_knowledge_gap_picks(gap, embeddings, np.empty((0, 3)), 3) == [0, 2, 3]


@pytest.mark.parametrize("budget", [0, 2, 9])
def test_relative_gap_fills_its_budget_without_repeats_and_is_deterministic(budget):
    gap, embeddings = gap_pool()
    picks = relative_knowledge_gap_picks(gap, embeddings, np.empty((0, 3)), budget)
    assert len(picks) == min(budget, 4) == len(set(picks))
    assert relative_knowledge_gap_picks(gap, embeddings, np.empty((0, 3)), budget) == picks


def case(name, embedding, asd, knowledge_gap):
    v = np.asarray(embedding, dtype=float)
    return CaseScores(
        name, "v0", asd, 0.8, False, 0.1, knowledge_gap, 0.0, 0.0, (v / np.linalg.norm(v)).tolist()
    )


def test_rank_pool_runs_the_relative_gap_on_the_pretrained_models_gap():
    rng = np.random.default_rng(0)
    pool = [case(f"r{i}", [1.0, *rng.normal(0, 0.05, 2)], 0.1, 0.1 + 0.01 * i) for i in range(5)]
    pool.append(case("far", [0.0, 1.0, 1.0], 0.2, 0.5))  # the largest gap
    config = QueryConfig(strategy=QueryStrategy.RELATIVE_DKD, budget=1)
    ranking = rank_pool(pool, [], config, None, np.random.default_rng(0))
    assert [r.case_id for r in ranking if r.picked] == ["far"]
    covered = rank_pool(pool, [pool[-1].embedding], config, None, np.random.default_rng(0))
    assert [r.case_id for r in covered if r.picked] != ["far"]
    assert sorted(r.rank for r in covered) == list(range(1, 7))


def test_relative_gap_never_repeats_a_pick_among_identical_cases():
    # every case covered by the first pick (D = 0 for all, the picked one included): still four distinct picks
    embeddings, gap = unit([[1.0, 0.0, 0.0]] * 4), np.array([0.4, 0.3, 0.2, 0.1])
    assert relative_knowledge_gap_picks(gap, embeddings, np.empty((0, 3)), 4) == [0, 1, 2, 3]
