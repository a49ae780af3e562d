"""The endpoint statistics on hand-made records: the bootstraps, the Wilcoxon tests over cases and over
seeds, random over all its draws, summary.json's comparisons, and choosing the full method's query on the
validation split only."""

import json

import numpy as np
import pytest
from asfda.benchmark.analysis.significance import (
    draws_bootstrap,
    hierarchical_bootstrap,
    mann_whitney_p,
    sd_interval,
    wilcoxon_seeds_p,
)
from asfda.benchmark.analysis.statistics import (
    choose_by_validation,
    compare_all_draws,
    headroom,
    paired_bootstrap,
    paired_matrix,
    summarise,
    wilcoxon_p,
    write_statistics,
)
from asfda.benchmark.running.arms import DEFAULT_QUERY
from asfda.benchmark.running.results import ALL_LABELLED, RunResult
from asfda.loop import RoundRecord

CASES = [f"tst_{i:03d}" for i in range(12)]


def run(arm, seed, offset, val=0.5, pseudo=None, fine_tuning="supervised"):
    rng = np.random.default_rng(seed)
    base = 0.5 + 0.05 * rng.standard_normal(len(CASES))  # the seed's own noise, shared by every arm
    per_case = {c: float(b + offset) for c, b in zip(CASES, base)}
    records = [RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0)]
    for number, n in enumerate((1, 2, 4), start=1):
        records.append(
            RoundRecord(
                number,
                n,
                [f"tgt_{number:03d}"],
                f"v{number}",
                float(np.mean(list(per_case.values()))),
                5.0,
                None,
                0.0,
                0.0,
                {},
                pseudo,
                per_case,
                {c: 1.0 for c in per_case},
                {"val_000": val, "val_001": val},
            )
        )
    return RunResult(arm, seed, fine_tuning, records)


def results():
    return [
        *[run("asfda", s, 0.04, pseudo=3, fine_tuning="semi-supervised") for s in range(3)],
        *[run("typiclust", s, 0.02, val=0.6) for s in range(3)],
        *[run("random", s, 0.0, val=0.7) for s in range(3)],
    ]


def test_the_paired_matrix_cancels_the_shared_seed_noise():
    matrix = paired_matrix(results(), "asfda", "random", 2)
    assert matrix.shape == (3, 12) and np.allclose(matrix, 0.04)


def test_bootstrap_interval_covers_the_mean_and_excludes_zero_for_a_clear_effect():
    rng = np.random.default_rng(0)
    differences = 0.03 + 0.01 * rng.standard_normal((8, 30))
    mean, low, high = paired_bootstrap(differences, samples=2000)
    assert low < mean < high and low > 0
    noisy = 0.0 + 0.05 * rng.standard_normal((8, 30))
    _, low, high = paired_bootstrap(noisy, samples=2000)
    assert low < 0 < high


def test_wilcoxon_detects_a_consistent_shift_and_not_a_null_one():
    rng = np.random.default_rng(1)
    assert wilcoxon_p(0.03 + 0.01 * rng.standard_normal((3, 20))) < 0.001
    assert wilcoxon_p(np.zeros((3, 20))) == 1.0
    assert wilcoxon_p(0.05 * rng.standard_normal((3, 20))) > 0.05


def test_summary_lists_a_comparison_per_baseline_and_the_ssl_twin(tmp_path):
    info = {"full_method": {"query": "typiclust", "chosen_by": "test"}}
    summary = summarise(results(), 2, info)
    comparisons = {c["strategy"]: c for c in summary["comparisons"]}
    assert set(comparisons) == {"typiclust", "random"}
    assert comparisons["random"]["difference"] == pytest.approx(0.04)
    assert comparisons["random"]["ci_low"] == pytest.approx(0.04) and comparisons["random"]["p_value"] < 0.01
    # three seeds all ahead: the exact two-sided signed-rank p is 2 / 2^3, the smallest three seeds can give
    assert comparisons["random"]["p_value_seeds"] == pytest.approx(0.25)
    assert comparisons["random"]["ci_hierarchical_low"] == pytest.approx(0.04)
    assert summary["semi_supervised_vs_supervised_twin"]["difference"] == pytest.approx(0.02)
    assert summary["semi_supervised_vs_supervised_twin"]["pseudo_labelled_per_round_by_seed"][0] == [3, 3, 3]
    assert summary["target"]["met"] is True
    write_statistics(tmp_path, results(), (1, 2, 4), 2, info)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert {"strategy", "difference", "ci_low", "ci_high", "p_value", "p_value_seeds"} <= set(
        written["comparisons"][0]
    )
    assert written["random_all_draws"]["n_draws"] == 3 and written["training_noise"] is None
    assert (tmp_path / "dice_hd95.png").read_bytes()[:4] == b"\x89PNG"
    assert "NOT met" not in (tmp_path / "statistics.md").read_text()


def test_a_supervised_full_method_is_the_twin_of_the_semi_supervised_arm():
    ssl = [run("ssl-late-teacher", s, 0.01, pseudo=2, fine_tuning="semi-supervised") for s in range(3)]
    supervised = [run("asfda", s, 0.04) for s in range(3)]
    info = {"full_method": {"query": DEFAULT_QUERY, "chosen_by": "test", "fine_tuning": "supervised"}}
    semi = summarise(supervised + ssl, 2, info)["semi_supervised_vs_supervised_twin"]
    assert (semi["arm"], semi["strategy"]) == ("ssl-late-teacher", "asfda")
    assert semi["difference"] == pytest.approx(-0.03)
    assert semi["pseudo_labelled_per_round_by_seed"][0] == [2, 2, 2]
    # with the default query's own arm in the run, that arm is the twin
    default_query = [run(DEFAULT_QUERY, s, 0.02) for s in range(3)]
    semi = summarise(supervised + ssl + default_query, 2, info)["semi_supervised_vs_supervised_twin"]
    assert semi["strategy"] == DEFAULT_QUERY and semi["difference"] == pytest.approx(-0.01)
    # the semi-supervised arms follow the default query's picks: a full method of another query has no twin
    info["full_method"]["query"] = "density"
    assert summarise(supervised + ssl, 2, info)["semi_supervised_vs_supervised_twin"] is None


def test_the_query_is_chosen_on_the_validation_split_not_the_test_set():
    # random has the best validation Dice, asfda the best test Dice: validation decides
    best, table = choose_by_validation(results(), ["asfda", "typiclust", "random"], 2)
    assert best == "random" and table["random"] == pytest.approx(0.7)


def test_headroom_sets_the_spread_of_random_draws_beside_the_target():
    # five random draws 0.00 .. 0.04 above a shared base (the same at every budget) and a ceiling run
    offsets = (0.0, 0.01, 0.02, 0.03, 0.04)
    draws = [run("random", 0, offset) for offset in offsets]
    for later in (r.records[3] for r in draws):  # the next budget (4 cases) scores 0.05 higher
        later.test_dice += 0.05
    room = headroom([*draws, run(ALL_LABELLED, 0, 0.10), run("asfda", 0, 0.5)], 2, ceiling_steps=860)
    base = draws[0].records[2].test_dice
    mean = base + np.mean(offsets)
    assert room["random_draws"] == 5  # only random's runs count
    assert room["random_mean"] == pytest.approx(mean)
    assert room["random_quantiles"]["0.5"] == pytest.approx(base + 0.02)
    assert room["random_best"] == pytest.approx(base + 0.04)
    assert room["best_draw_gain"] == pytest.approx(0.02)
    assert room["target_dice"] == pytest.approx(mean + 0.03)
    assert room["next_budget"] == 4 and room["random_at_next_budget"] == pytest.approx(mean + 0.05)
    assert room["all_labelled"] == pytest.approx(base + 0.10) and room["all_labelled_steps"] == 860
    assert headroom(draws[:1], 2) is None  # one draw has no spread


def test_statistics_markdown_states_the_headroom(tmp_path):
    info = {"full_method": {"query": "typiclust", "chosen_by": "test"}}
    write_statistics(tmp_path, results(), (1, 2, 4), 2, info)
    text = (tmp_path / "statistics.md").read_text()
    assert "the best draw scores" in text and "Random at 4 labelled cases" in text


def test_the_seed_test_sees_seed_variance_that_the_case_test_averages_away():
    # Every case gains 0.0025 on average over seeds, but the seeds split four up, four down, their ranks
    # interleaved (signed-rank sums 20 and 16).
    seed_means = np.array([0.05, -0.045, 0.04, -0.035, 0.03, -0.025, 0.02, -0.015])[:, None]
    differences = seed_means + np.linspace(-0.001, 0.001, 30)[None, :]
    assert wilcoxon_p(differences) < 1e-5  # 30 cases, every one positive on average
    assert wilcoxon_seeds_p(differences) > 0.5  # 8 seeds, no consistent sign
    # all 8 seeds ahead: the exact p is 2 / 2^8, whatever the sizes
    assert wilcoxon_seeds_p(np.arange(1, 9)[:, None] * np.ones((8, 30))) == pytest.approx(2 / 256)
    assert wilcoxon_seeds_p(np.zeros((8, 30))) == 1.0
    assert np.isnan(wilcoxon_seeds_p(np.zeros((0, 0))))


def test_the_hierarchical_bootstrap_resamples_cases_within_each_seed():
    # Identical seeds, varied cases: resampling cases per seed averages 8 independent resamples, so its
    # interval is about 1/sqrt(8) as wide as the crossed bootstrap's, which resamples the cases once.
    cases = np.random.default_rng(0).standard_normal(30) * 0.05
    identical = np.tile(cases, (8, 1))
    mean, low, high = hierarchical_bootstrap(identical, samples=4000)
    _, crossed_low, crossed_high = paired_bootstrap(identical, samples=4000)
    assert mean == pytest.approx(cases.mean()) and low < mean < high
    assert (high - low) / (crossed_high - crossed_low) == pytest.approx(1 / np.sqrt(8), rel=0.2)
    # Constant within each seed: only the seeds vary, and the interval stays inside their range.
    rows = np.repeat(np.array([0.01, 0.02, 0.03, 0.04])[:, None], 10, axis=1)
    mean, low, high = hierarchical_bootstrap(rows, samples=4000)
    assert mean == pytest.approx(0.025) and 0.01 <= low < 0.025 < high <= 0.04
    assert hierarchical_bootstrap(np.full((3, 5), 0.02))[1:] == pytest.approx((0.02, 0.02))


def flat(arm, seed, value):
    """A run whose every test case scores ``value`` at 2 labelled cases."""
    per_case = {c: value for c in CASES}
    records = [
        RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0),
        RoundRecord(1, 2, ["tgt_001"], "v1", value, 5.0, None, 0.0, 0.0, {}, None, per_case),
    ]
    return RunResult(arm, seed, "supervised", records)


def test_random_is_compared_over_all_its_draws_not_only_the_paired_ones():
    # ASFDA 0.60 on seeds 0-7; random 0.62 on the paired seeds 0-7 and 0.58 on its extra draws 8-15.
    runs = [flat("asfda", s, 0.60) for s in range(8)]
    runs += [flat("random", s, 0.62 if s < 8 else 0.58) for s in range(16)]
    paired = summarise(runs, 2, {"full_method": {}})["comparisons"][0]
    assert paired["difference"] == pytest.approx(-0.02) and paired["n_seeds"] == 8
    draws = compare_all_draws(runs, "asfda", "random", 2)
    assert draws["difference"] == pytest.approx(0.0) and (draws["n_seeds"], draws["n_draws"]) == (8, 16)
    assert draws["ci_low"] < 0 < draws["ci_high"] and draws["p_value"] == 1.0
    assert draws["p_value_seeds"] == pytest.approx(1.0)  # U at its mean: 0.60 sits between 0.58 and 0.62
    assert compare_all_draws(runs, "asfda", "entropy", 2) is None


def test_the_draws_bootstrap_resamples_each_arm_on_its_own():
    arm = np.full((4, 6), 0.5)
    reference = np.vstack([np.full((1, 6), 0.4), np.full((1, 6), 0.6)])  # two draws, mean 0.5
    mean, low, high = draws_bootstrap(arm, reference, samples=4000)
    assert mean == pytest.approx(0.0)
    assert low == pytest.approx(-0.1) and high == pytest.approx(0.1)  # both draws twice at the tails
    assert draws_bootstrap(arm, reference + 0.2)[0] == pytest.approx(-0.2)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6, 7]) == pytest.approx(2 / 35)  # exact: 1 of C(7,3) each side


def test_sd_interval_covers_the_true_sd_of_eight_seeds_95_times_in_100():
    rng = np.random.default_rng(0)
    true_sd = 0.5
    intervals = [sd_interval(rng.normal(60.0, true_sd, 8)) for _ in range(4000)]
    coverage = np.mean([low <= true_sd <= high for low, high in intervals])
    assert 0.93 < coverage < 0.97
    values = np.array([52.0, 57.6, 57.1, 59.0, 56.2, 53.8, 58.7, 58.8])
    low, high = sd_interval(values)
    sd = np.std(values, ddof=1)
    assert low / sd == pytest.approx(0.661, abs=1e-3) and high / sd == pytest.approx(2.035, abs=1e-3)
    assert sd_interval(values, level=0.5)[1] < high
    with pytest.raises(ValueError, match="two or more"):
        sd_interval([1.0])
