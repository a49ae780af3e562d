"""Tables, areas under the curve, comparisons and plots from hand-made run records (no model runs)."""

import csv
import io
import json
import math

import pytest
from asfda.benchmark.analysis.costs import cost_rows, costs_markdown
from asfda.benchmark.analysis.figures import plot_curves, plot_rounds
from asfda.benchmark.analysis.report import (
    Verdict,
    compare,
    normalised_auc,
    records_csv,
    results_csv,
    results_markdown,
    table_rows,
    verdict,
)
from asfda.benchmark.running.results import ALL_LABELLED, RoundCost, RunResult
from asfda.loop import RoundRecord

SCHEDULE = (1, 2, 4, 8)


def run(arm, seed, dice, hd95=None, fine_tuning="supervised", passes=1, scoring_seconds=2.0):
    """A run whose rounds reach 1, 2, 4, 8 labelled cases with the given Dice after each; round 0 = 0.4."""
    hd95 = hd95 or [10.0] * len(dice)
    records = [RoundRecord(0, 0, [], "v0000", 0.4, 20.0, None, 0.0, 0.0, {1: 0.4})]
    costs = [RoundCost(0, 0, 0)]
    for number, (n, d, h) in enumerate(zip(SCHEDULE, dice, hd95), start=1):
        records.append(
            RoundRecord(
                number,
                n,
                [f"tgt_{number}"],
                f"v000{number}",
                d,
                h,
                0.9,
                scoring_seconds,
                10.0 * number,
                {1: d},
            )
        )
        volumes = 0 if number == 1 else 16
        costs.append(RoundCost(number, volumes, volumes * passes))
    return RunResult(arm, seed, fine_tuning, records, costs, peak_rss_mib=500.0 + seed)


@pytest.fixture
def results():
    return [
        run("asfda", 0, [0.50, 0.60, 0.70, 0.80], fine_tuning="semi-supervised"),
        run("asfda", 1, [0.52, 0.62, 0.72, 0.82], fine_tuning="semi-supervised"),
        run("asfda", 2, [0.54, 0.64, 0.74, 0.84], fine_tuning="semi-supervised"),
        run("random", 0, [0.45, 0.55, 0.75, 0.79], passes=0),
        run("random", 1, [0.47, 0.57, 0.73, 0.80], passes=0),
        run("random", 2, [0.49, 0.59, 0.75, 0.85], passes=0),
        run("epistemic", 0, [0.50, 0.60, 0.70, 0.80], passes=6, scoring_seconds=12.0),
        RunResult(
            ALL_LABELLED,
            0,
            "supervised",
            [
                RoundRecord(0, 0, [], "v0000", 0.4, 20.0, None, 0, 0),
                RoundRecord(1, 16, ["all"], "v0001", 0.9, 5.0, 0.95, 0, 40.0),
            ],
        ),
    ]


def test_normalised_auc_is_the_mean_height_over_equally_spaced_schedule_positions():
    assert normalised_auc([0.2, 0.4, 0.6, 0.8]) == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    assert normalised_auc([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert normalised_auc([0.7]) == pytest.approx(0.7)
    assert math.isnan(normalised_auc([]))
    assert math.isnan(normalised_auc([0.5, float("nan")]))


def test_verdict_needs_the_same_sign_for_every_seed():
    assert verdict([0.01, 0.02, 0.001]) is Verdict.WIN
    assert verdict([-0.01, -0.02]) is Verdict.LOSS
    assert verdict([0.05, -0.01, 0.02]) is Verdict.TIE
    assert verdict([0.0, 0.1]) is Verdict.TIE
    assert verdict([]) is Verdict.TIE


def test_table_rows_give_mean_and_sample_sd_over_seeds(results):
    rows = {row.arm: row for row in table_rows(results, SCHEDULE)}
    assert set(rows) == {"asfda", "random", "epistemic"}  # the ceiling is a reference point, not a row
    assert rows["asfda"].dice[1].mean == pytest.approx(0.52)
    assert rows["asfda"].dice[1].sd == pytest.approx(0.02)
    assert rows["asfda"].dice[8].n == 3
    assert rows["asfda"].auc.mean == pytest.approx(normalised_auc([0.52, 0.62, 0.72, 0.82]))
    assert rows["epistemic"].dice[2].sd == 0.0 and rows["epistemic"].seeds == [0]
    assert rows["asfda"].fine_tuning == "semi-supervised"


def test_comparisons_are_paired_by_seed(results):
    comparisons = {(c.baseline, c.budget): c for c in compare(results, "asfda", SCHEDULE)}
    at_one = comparisons[("random", 1)]
    assert at_one.differences == pytest.approx([0.05, 0.05, 0.05]) and at_one.verdict is Verdict.WIN
    assert comparisons[("random", 4)].verdict is Verdict.LOSS
    assert comparisons[("random", 8)].verdict is Verdict.TIE
    assert comparisons[("epistemic", None)].differences == pytest.approx([0.0])  # only seed 0 is paired
    assert comparisons[("epistemic", None)].verdict is Verdict.TIE
    assert ("asfda", None) not in comparisons and (ALL_LABELLED, None) not in comparisons
    assert compare(results, "missing", SCHEDULE) == []


def test_markdown_and_csv_tables(results):
    markdown = results_markdown(results, SCHEDULE, "asfda", {"asfda": "ours"}, "# Title")
    assert markdown.startswith("# Title")
    assert "| asfda | semi-supervised | 0.520 ± 0.020 |" in markdown
    assert "**source-only**" in markdown and "Dice 0.400" in markdown
    assert "**all-labelled** (all 16 pool cases) Dice 0.900" in markdown
    assert "| random | +0.0" in markdown and "verdict" in markdown
    rows = list(csv.DictReader(io.StringIO(results_csv(results, SCHEDULE))))
    by_key = {(r["strategy"], r["n_labelled"]): r for r in rows}
    assert float(by_key[("asfda", "1")]["dice_mean"]) == pytest.approx(0.52)
    assert float(by_key[("asfda", "1")]["dice_sd"]) == pytest.approx(0.02)
    assert by_key[("asfda", "1")]["n_seeds"] == "3"
    assert float(by_key[("random", "auc")]["dice_mean"]) == pytest.approx(
        sum(
            normalised_auc(d)
            for d in ([0.45, 0.55, 0.75, 0.79], [0.47, 0.57, 0.73, 0.80], [0.49, 0.59, 0.75, 0.85])
        )
        / 3,
        abs=1e-5,  # the CSV keeps five decimals
    )
    assert float(by_key[("source-only", "0")]["dice_mean"]) == pytest.approx(0.4)
    assert float(by_key[(ALL_LABELLED, "16")]["dice_mean"]) == pytest.approx(0.9)
    raw = list(csv.DictReader(io.StringIO(records_csv(results))))
    assert len(raw) == sum(len(r.records) for r in results)
    assert raw[2]["forward_passes"] == "16" and raw[2]["volumes_scored"] == "16"
    assert raw[2]["pseudo_labelled"] == ""  # not recorded


def test_costs_count_passes_per_scored_volume_after_the_first_round(results):
    rows = {row.arm: row for row in cost_rows(results)}
    assert rows["asfda"].volumes == 3 * 3 * 16 and rows["asfda"].passes_per_volume == pytest.approx(1.0)
    assert rows["asfda"].seconds_per_volume == pytest.approx(2.0 / 16)
    assert rows["epistemic"].passes_per_volume == pytest.approx(6.0)
    assert rows["epistemic"].seconds_per_volume == pytest.approx(12.0 / 16)
    assert rows["asfda"].finetune_seconds.mean == pytest.approx(25.0)
    assert rows["asfda"].peak_rss_mib == pytest.approx(502.0)
    text = costs_markdown(
        results,
        {
            "ours": {"passes_per_volume": 1.0, "seconds": [1.0, 2.0]},
            "epistemic": {"passes_per_volume": 6.0, "seconds": [6.0, 7.0]},
        },
    )
    assert "| epistemic | 48 | 6.0 | 0.75 |" in text and "1.50 ± 0.71" in text and "n/a (CPU)" in text


def test_run_result_json_round_trip(results):
    original = results[0]
    restored = RunResult.from_json(json.loads(json.dumps(original.to_json())))
    assert restored == original
    assert restored.records[1].per_class_dice == {1: 0.5}


def test_plots_are_png_files(results, tmp_path):
    curves = plot_curves(results, SCHEDULE, tmp_path / "curves.png", title="test")
    rounds = plot_rounds(results[0].records, tmp_path / "rounds.png")
    for path in (curves, rounds):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
