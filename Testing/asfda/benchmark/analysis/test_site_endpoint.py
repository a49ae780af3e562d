"""The site endpoints on hand-made per-case results: every sub-population counts equally."""

import pytest
from asfda.benchmark.analysis.site_endpoint import endpoint_labelled, site_endpoint, subpopulation_weights

# 4 routine cases that the model gets right and 1 rare case it fails: the plain mean hides the failure.
DICE = {"tst_000": 0.9, "tst_001": 0.8, "tst_002": 0.9, "tst_003": 0.8, "tst_004": 0.2}
MODES = {
    "tst_000": "routine",
    "tst_001": "routine",
    "tst_002": "routine",
    "tst_003": "routine",
    "tst_004": "motion",
}


def test_subpopulation_mean_case_weighted_mean_and_worst():
    result = site_endpoint(DICE, MODES)
    assert result.per_subpopulation == pytest.approx({"routine": 0.85, "motion": 0.2})
    assert result.cases == {"routine": 4, "motion": 1}
    assert result.subpopulation_mean == pytest.approx((0.85 + 0.2) / 2)
    assert result.case_weighted_mean == pytest.approx(3.6 / 5)
    assert (result.worst_subpopulation, result.worst_dice) == ("motion", pytest.approx(0.2))
    assert result.to_json()["subpopulation_mean"] == pytest.approx(0.525)


def test_a_set_that_covers_the_rare_mode_wins_on_the_endpoint_though_not_on_the_plain_mean():
    covers_rare = {**DICE, "tst_000": 0.8, "tst_001": 0.7, "tst_002": 0.8, "tst_004": 0.5}
    a, b = site_endpoint(covers_rare, MODES), site_endpoint(DICE, MODES)
    assert a.case_weighted_mean == pytest.approx(b.case_weighted_mean)
    assert a.subpopulation_mean > b.subpopulation_mean + 0.1


def test_weights_give_the_subpopulation_mean():
    weights = subpopulation_weights(DICE, MODES)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["tst_004"] == pytest.approx(0.5) and weights["tst_000"] == pytest.approx(0.125)
    weighted = sum(weights[c] * d for c, d in DICE.items())
    assert weighted == pytest.approx(site_endpoint(DICE, MODES).subpopulation_mean)


def test_bad_results_are_refused():
    with pytest.raises(ValueError, match="tst_009"):
        site_endpoint({**DICE, "tst_009": 0.5}, MODES)
    with pytest.raises(ValueError, match="fewer than 5"):
        site_endpoint(DICE, MODES, min_cases=5)
    with pytest.raises(ValueError, match="finite"):
        site_endpoint({**DICE, "tst_004": float("nan")}, MODES)
    with pytest.raises(ValueError, match="no test case"):
        site_endpoint({}, MODES)


def test_endpoint_is_ten_percent_of_the_pool():
    assert endpoint_labelled(60) == 6 and endpoint_labelled(100) == 10 and endpoint_labelled(4) == 1
