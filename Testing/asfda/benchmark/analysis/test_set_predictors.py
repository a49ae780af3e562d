"""Set predictors on hand-made random draws: the property that makes the endpoint shows rho 1 on both splits,
a score only partly tied to it less, and too few draws or no recorded scores give no table."""

import numpy as np
import pytest
from asfda.benchmark.analysis.set_predictors import set_predictors, set_predictors_markdown
from asfda.benchmark.running.results import RunResult
from asfda.loop import RoundRecord
from asfda.loop_records import PoolScores

POOL = [f"tgt_{i:03d}" for i in range(10)]
RARE = set(POOL[:3])  # tgt_000-002 are the rare mode
SUBPOPULATION = {c: "rare" if c in RARE else "routine" for c in POOL}
SUBPOPULATION |= {"tst_000": "routine", "tst_001": "rare", "val_000": "routine", "val_001": "rare"}
# a score that is the case's index: the rare cases have the lowest, so it is only partly tied to the endpoint
SCORES = PoolScores(POOL, list(range(1, 11)), [None] * 10, knowledge_gap=[float(i) for i in range(10)])


def draw(seed: int, picked: list[str], scored: bool = False) -> RunResult:
    rare = sum(c in RARE for c in picked)
    dice = 0.5 + 0.1 * rare  # every rare case in the set raises the rare mode's Dice
    per_case = {"tst_000": 0.8, "tst_001": dice}
    validation = {"val_000": 0.7, "val_001": dice - 0.05}
    records = [
        RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0),
        RoundRecord(
            1,
            2,
            picked,
            "v1",
            0.6,
            5.0,
            None,
            0.0,
            0.0,
            per_case_dice=per_case,
            validation_split_dice=validation,
            query_scores=SCORES if scored else None,
        ),
    ]
    return RunResult("asfda" if scored else "random", seed, "supervised", records)


def draws(count: int) -> list[RunResult]:
    rng = np.random.default_rng(0)
    runs = [draw(0, ["tgt_005", "tgt_006"], scored=True)]
    return runs + [draw(s, sorted(rng.choice(POOL, 2, replace=False).tolist())) for s in range(count)]


def test_the_property_that_makes_the_endpoint_predicts_it_and_a_partly_related_score_less():
    predictors = set_predictors(draws(30), 2, SUBPOPULATION)
    assert predictors["arm"] == "random" and predictors["n_draws"] == 30
    rare = predictors["properties"]["count rare"]
    assert rare["validation"]["rho"] == pytest.approx(1.0) and rare["test"]["rho"] == pytest.approx(1.0)
    assert predictors["properties"]["count routine"]["test"]["rho"] == pytest.approx(-1.0)
    gap = predictors["properties"]["mean knowledge_gap"]
    assert -1.0 < gap["test"]["rho"] < 0.0  # lower indices, more rare cases, a higher endpoint
    assert predictors["validation_vs_test"]["rho"] == pytest.approx(1.0)
    lines = set_predictors_markdown(predictors)
    assert any(line.startswith("| count rare | +1.00") for line in lines)


def test_too_few_draws_or_no_recorded_scores_give_no_table():
    assert set_predictors(draws(5), 2, SUBPOPULATION) is None
    unscored = [r for r in draws(30) if r.arm == "random"]
    assert set_predictors(unscored, 2, SUBPOPULATION) is None
    assert set_predictors_markdown(None) == []
