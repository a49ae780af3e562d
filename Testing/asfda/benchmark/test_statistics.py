"""The endpoint statistics on hand-made records: paired bootstrap, Wilcoxon, summary.json's comparisons,
and choosing the full method's query on the validation split only."""

import json

import numpy as np
import pytest
from asfda.benchmark.report import ALL_LABELLED, RunResult
from asfda.benchmark.statistics import (
    choose_by_validation,
    headroom,
    paired_bootstrap,
    paired_matrix,
    summarise,
    wilcoxon_p,
    write_statistics,
)
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
    assert summary["semi_supervised_vs_supervised_twin"]["difference"] == pytest.approx(0.02)
    assert summary["semi_supervised_vs_supervised_twin"]["pseudo_labelled_per_round_by_seed"][0] == [3, 3, 3]
    assert summary["target"]["met"] is True
    write_statistics(tmp_path, results(), (1, 2, 4), 2, info)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert {"strategy", "difference", "ci_low", "ci_high", "p_value"} <= set(written["comparisons"][0])
    assert (tmp_path / "dice_hd95.png").read_bytes()[:4] == b"\x89PNG"
    assert "NOT met" not in (tmp_path / "statistics.md").read_text()


def test_a_supervised_full_method_is_the_twin_of_the_semi_supervised_arm():
    ssl = [run("ssl-late-teacher", s, 0.01, pseudo=2, fine_tuning="semi-supervised") for s in range(3)]
    supervised = [run("asfda", s, 0.04) for s in range(3)]
    info = {"full_method": {"query": "typiclust", "chosen_by": "test", "fine_tuning": "supervised"}}
    semi = summarise(supervised + ssl, 2, info)["semi_supervised_vs_supervised_twin"]
    assert (semi["arm"], semi["strategy"]) == ("ssl-late-teacher", "asfda")
    assert semi["difference"] == pytest.approx(-0.03)
    assert semi["pseudo_labelled_per_round_by_seed"][0] == [2, 2, 2]
    # with the query's own arm in the run, that arm is the twin
    typiclust = [run("typiclust", s, 0.02) for s in range(3)]
    semi = summarise(supervised + ssl + typiclust, 2, info)["semi_supervised_vs_supervised_twin"]
    assert semi["strategy"] == "typiclust" and semi["difference"] == pytest.approx(-0.01)
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
