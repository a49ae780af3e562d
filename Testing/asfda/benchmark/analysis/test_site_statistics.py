"""The site endpoint in summary.json on hand-made records: the arms' endpoints, the comparisons made on the
sub-population mean (stratified bootstrap, weighted sign-flip test), and the headroom on the same metric."""

import json

import numpy as np
import pytest
from asfda.benchmark.analysis.significance import stratified_bootstrap, weighted_sign_flip_p
from asfda.benchmark.analysis.statistics import summarise, write_statistics
from asfda.benchmark.running.results import ALL_LABELLED, RunResult
from asfda.loop import RoundRecord

# 4 routine test cases and 2 rare ones: unequal counts, so the case-weighted and sub-population means part.
ROUTINE = [f"tst_{i:03d}" for i in range(4)]
RARE = ["tst_004", "tst_005"]
MODES = {**{c: "routine" for c in ROUTINE}, **{c: "rare" for c in RARE}}
INFO = {
    "full_method": {"query": "typiclust", "chosen_by": "test"},
    "case_metadata": {name: {"subpopulation": mode, "split": "test"} for name, mode in MODES.items()},
}


def site_run(arm, seed, routine, rare, picked=("tgt_000",)):
    noise = 0.01 * np.random.default_rng(seed).standard_normal(6)  # the seed's noise, shared by the arms
    per_case = {c: float(routine + n) for c, n in zip(ROUTINE, noise)}
    per_case |= {c: float(rare + n) for c, n in zip(RARE, noise[4:])}
    records = [RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0)]
    for number, n in enumerate((1, 2), start=1):
        dice = float(np.mean(list(per_case.values())))
        records.append(
            RoundRecord(
                number, n, list(picked), f"v{number}", dice, 5.0, None, 0.0, 0.0, per_case_dice=per_case
            )
        )
    return RunResult(arm, seed, "supervised", records)


def site_results():
    # asfda: 0.05 worse on routine, 0.20 better on the rare mode than random
    return [
        *[site_run("asfda", s, 0.75, 0.50) for s in range(4)],
        *[site_run("random", s, 0.80, 0.30) for s in range(4)],
    ]


def test_comparisons_are_made_on_the_subpopulation_mean_not_the_case_mean():
    summary = summarise(site_results(), 2, INFO)
    (comparison,) = summary["comparisons"]
    assert comparison["strategy"] == "random" and comparison["endpoint"] == "subpopulation_mean"
    assert comparison["difference"] == pytest.approx((-0.05 + 0.20) / 2)
    (plain,) = summary["site"]["comparisons_case_weighted"]
    assert plain["difference"] == pytest.approx((4 * -0.05 + 2 * 0.20) / 6)
    assert comparison["case_weighted_difference"] == pytest.approx(plain["difference"])
    assert comparison["worst_difference"] == pytest.approx(0.20)  # the rare mode is worst for both
    assert comparison["ci_low"] > 0 and comparison["n_subpopulations"] == 2
    assert summary["endpoint"]["metric"].startswith("mean over sub-populations")
    assert summary["target"]["met"]  # +0.075 >= 0.03 with the interval above zero


def test_each_arm_carries_its_site_endpoint():
    arms = summarise(site_results(), 2, INFO)["site"]["arms"]
    asfda = arms["asfda"]
    assert asfda["subpopulation_mean"] == pytest.approx((0.75 + 0.50) / 2, abs=0.01)
    assert asfda["case_weighted_mean"] == pytest.approx((4 * 0.75 + 2 * 0.50) / 6, abs=0.01)
    assert asfda["worst_subpopulation"] == "rare" and asfda["worst_dice"] == pytest.approx(0.5, abs=0.01)
    assert set(asfda["per_subpopulation"]) == {"rare", "routine"} and asfda["n_runs"] == 4
    assert arms["random"]["worst_dice"] == pytest.approx(0.3, abs=0.01)


def test_each_arm_carries_the_endpoint_metric_on_the_validation_split():
    # 3 routine validation cases at 0.9 and 1 rare at 0.3: sub-population mean 0.6, case mean 0.75
    validation = {"val_000": 0.9, "val_001": 0.9, "val_002": 0.9, "val_003": 0.3}
    modes = {"val_000": "routine", "val_001": "routine", "val_002": "routine", "val_003": "rare"}
    info = {
        **INFO,
        "case_metadata": {**INFO["case_metadata"], **{c: {"subpopulation": m} for c, m in modes.items()}},
    }
    results = site_results()
    for run in results:
        run.records[-1].validation_split_dice = dict(validation) if run.arm == "asfda" else {}
    arms = summarise(results, 2, info)["site"]["arms"]
    assert arms["asfda"]["validation_subpopulation_mean"] == pytest.approx(0.6)
    assert arms["random"]["validation_subpopulation_mean"] is None  # no validation split scored


def test_a_dataset_without_subpopulations_keeps_the_plain_endpoint():
    summary = summarise(site_results(), 2, {"full_method": {}})
    assert summary["site"] is None and "endpoint" not in summary["comparisons"][0]
    assert summary["comparisons"][0]["difference"] == pytest.approx((4 * -0.05 + 2 * 0.20) / 6)


def test_statistics_files_state_the_site_endpoint(tmp_path):
    write_statistics(tmp_path, site_results(), (1, 2), 2, INFO)
    text = (tmp_path / "statistics.md").read_text()
    assert (
        "Site endpoint per arm" in text and "| sign-flip p (cases) |" in text and "| rare | routine |" in text
    )
    assert "| asfda | 0.62" in text and "rare 0.50" in text and "Worst sub-population, ASFDA minus" in text
    assert json.loads((tmp_path / "summary.json").read_text())["site"]["arms"]["random"]["n_runs"] == 4


def test_the_stratified_bootstrap_keeps_every_subpopulations_weight():
    # each stratum's difference is constant: resampling cases within strata cannot move the estimate,
    # where resampling across strata would change the mix of 4 routine and 2 rare cases
    differences = np.array([[-0.05] * 4 + [0.2] * 2] * 3)
    estimate, low, high = stratified_bootstrap(differences, [[0, 1, 2, 3], [4, 5]], samples=500)
    assert (estimate, low, high) == pytest.approx((0.075, 0.075, 0.075))
    _, nested_low, nested_high = stratified_bootstrap(differences, [[0, 1, 2, 3], [4, 5]], 500, nested=True)
    assert nested_low == pytest.approx(0.075) and nested_high == pytest.approx(0.075)


def test_the_weighted_sign_flip_test_is_exact_on_few_cases_and_sees_a_weighted_effect():
    assert weighted_sign_flip_p(np.full(4, 0.1), np.full(4, 0.25)) == pytest.approx(2 / 16)
    assert weighted_sign_flip_p(np.zeros(5), np.full(5, 0.2)) == 1.0
    # 10 rare cases 0.2 better, 40 routine 0.05 worse: zero on the case mean, +0.075 on the mode mean
    values = np.array([0.2] * 10 + [-0.05] * 40)
    by_mode = np.array([0.05] * 10 + [0.0125] * 40)
    assert weighted_sign_flip_p(values, by_mode) < 0.05 < weighted_sign_flip_p(values, np.full(50, 1 / 50))
    shifted = 0.05 + 0.01 * np.random.default_rng(0).standard_normal(30)
    assert weighted_sign_flip_p(shifted, np.full(30, 1 / 30)) < 0.001


def test_the_headroom_uses_the_site_metric():
    results = [*site_results(), site_run(ALL_LABELLED, 0, 0.9, 0.9)]
    room = summarise(results, 2, INFO)["headroom"]
    assert room["metric"] == "sub-population mean test Dice"
    assert room["random_mean"] == pytest.approx((0.80 + 0.30) / 2, abs=0.01)
    assert room["all_labelled"] == pytest.approx(0.9, abs=0.01)
