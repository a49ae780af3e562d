import numpy as np
from asfda.config import QueryConfig, QueryStrategy
from asfda.scoring.case_scores import CaseScores
from asfda.scoring.class_entropy import class_stratified_entropy, per_class_with_missing
from asfda.scoring.query import rank_pool


def test_a_class_never_predicted_counts_as_maximally_difficult():
    seen = per_class_with_missing({1: 0.2, 2: 0.4}, num_classes=4)
    assert seen == {1: 0.2, 2: 0.4, 3: 1.0}
    assert class_stratified_entropy(seen) == np.mean([0.2, 0.4, 1.0])
    # the old ASD (mean over predicted classes only) would call this case easier than one with all classes
    assert class_stratified_entropy(seen) > class_stratified_entropy({"1": 0.5, "2": 0.5, "3": 0.5})


def test_clasp_prefers_the_case_that_misses_a_class_when_cold():
    def case(name, per_class, asd):
        return CaseScores(
            name, "v0", asd, 0.8, False, 0.1, 0.0, 0.0, 0.0, [1.0, 0.0], per_class_entropy=per_class
        )

    pool = [case(f"c{i}", {1: 0.3, 2: 0.3}, 0.3) for i in range(5)] + [case("missing", {1: 0.1, 2: 1.0}, 0.1)]
    config = QueryConfig(strategy=QueryStrategy.CLASP, budget=1, gumbel_temperature=0.0)
    ranking = rank_pool(pool, [], config, None, np.random.default_rng(0))
    assert [r.case_id for r in ranking if r.picked] == ["missing"]  # ASD alone ranks it last
