"""The new query strategies through rank_pool, on hand-made case scores."""

import numpy as np
from asfda.config import QueryConfig, QueryStrategy
from asfda.scoring.case_scores import CaseScores
from asfda.scoring.query import rank_pool


def case(name, embedding, asd):
    v = np.asarray(embedding, dtype=float)
    return CaseScores(name, "v0", asd, 0.8, False, 0.1, 0.0, 0.0, 0.0, (v / np.linalg.norm(v)).tolist())


def pool():
    # eight typical cases around one direction, one far outlier with the highest difficulty
    rng = np.random.default_rng(0)
    cases = [case(f"t{i}", [1.0, *rng.normal(0, 0.05, 2)], asd=0.1 + 0.01 * i) for i in range(8)]
    return cases + [case("outlier", [0.0, 1.0, 1.0], asd=0.9)]


def picks(strategy, labelled=(), budget=1, seed=0):
    ranking = rank_pool(
        pool(),
        list(labelled),
        QueryConfig(strategy=strategy, budget=budget),
        None,
        np.random.default_rng(seed),
    )
    assert sorted(r.rank for r in ranking) == list(range(1, 10))
    return [r.case_id for r in ranking if r.picked]


def test_the_first_formulation_takes_the_outlier_and_typicality_does_not():
    assert picks(QueryStrategy.ASFDA) == ["outlier"]
    assert picks(QueryStrategy.TYPICLUST) != ["outlier"]
    assert picks(QueryStrategy.TYPICAL_STOCHASTIC) != ["outlier"]


def test_density_weighting_prefers_a_difficult_typical_case_over_the_outlier():
    assert picks(QueryStrategy.DENSITY) != ["outlier"]


def test_stochastic_picks_vary_with_the_seed_but_favour_difficult_cases():
    firsts = [picks(QueryStrategy.STOCHASTIC, seed=s)[0] for s in range(60)]
    assert len(set(firsts)) > 2  # hedged: not always the same case
    assert firsts.count("outlier") > 60 / 9  # more often than uniform: it has the top difficulty


def test_every_new_strategy_fills_its_budget_without_repeats():
    for strategy in (
        QueryStrategy.TYPICLUST,
        QueryStrategy.DENSITY,
        QueryStrategy.STOCHASTIC,
        QueryStrategy.TYPICAL_STOCHASTIC,
        QueryStrategy.CLUSTER_DIFFICULTY,
        QueryStrategy.RELATIVE_DKD,
    ):
        chosen = picks(strategy, labelled=[[1.0, 0.0, 0.0]], budget=3)
        assert len(chosen) == 3 == len(set(chosen))
