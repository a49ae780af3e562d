"""The training-noise runs: one fixed labelled set per size, and the spread of test Dice over seeds."""

import json

import pytest
from asfda.benchmark.running.results import RunResult
from asfda.benchmark.running.training_noise import (
    FOLDER,
    fixed_sets,
    load_noise_runs,
    training_noise_markdown,
    training_noise_summary,
)
from asfda.errors import ASFDAError
from asfda.loop import RoundRecord

POOL = [f"tgt_{i:03d}" for i in range(20)]


def test_one_fixed_set_per_size_drawn_once_and_nested():
    sets = fixed_sets(POOL, (6, 3))
    assert list(sets) == [3, 6] and [len(s) for s in sets.values()] == [3, 6]
    assert set(sets[3]) < set(sets[6]) <= set(POOL)
    assert fixed_sets(list(reversed(POOL)), (3, 6)) == sets  # the pool's order does not matter
    assert fixed_sets(POOL, (3,), seed=1) != {3: sets[3]}
    with pytest.raises(ASFDAError, match="1 to 20"):
        fixed_sets(POOL, (21,))


def noise_run(n, seed, dice, activated=True):
    cases = sorted(POOL[:n])
    records = [
        RoundRecord(0, 0, [], "pretrained", None, None, None, 0.0, 0.0),
        RoundRecord(1, n, cases, "v0001", dice, None, None, 0.0, 0.0, activated=activated),
    ]
    return RunResult(f"training-noise-{n}", seed, "supervised", records)


def test_summary_gives_the_sd_over_seeds_in_dice_points():
    runs = [noise_run(3, s, d) for s, d in enumerate((0.60, 0.61, 0.62))]
    runs += [noise_run(6, s, d, activated=s != 1) for s, d in enumerate((0.650, 0.652, 0.654))]
    summary = training_noise_summary(runs)
    three, six = summary["sets"]["3"], summary["sets"]["6"]
    assert three["cases"] == sorted(POOL[:3]) and three["n_seeds"] == 3
    assert three["dice_mean"] == pytest.approx(0.61) and three["sd_points"] == pytest.approx(1.0)
    assert three["range_points"] == pytest.approx(2.0) and three["per_seed"] == {
        "0": 0.60,
        "1": 0.61,
        "2": 0.62,
    }
    assert three["met"] is False and six["met"] is True and six["sd_points"] == pytest.approx(0.2)
    assert six["held_back"] == 1 and summary["target_sd_points"] == 0.5
    text = "".join(training_noise_markdown(summary))
    low, high = three["sd_ci_points"]
    assert low < 1.0 < high and high > 2 * low  # three seeds barely pin an sd down
    assert f"0.6100, sd 1.00 [{low:.2f}, {high:.2f}] points" in text and "1 held back" in text
    assert training_noise_summary([]) is None and training_noise_markdown(None) == []
    one = training_noise_summary([noise_run(3, 0, 0.6)])["sets"]["3"]
    assert one["sd_points"] is None and one["sd_ci_points"] is None and one["met"] is None


def test_saved_runs_load_by_size_and_seed(tmp_path):
    (tmp_path / FOLDER).mkdir()
    for n, seed in ((3, 0), (3, 1), (6, 0)):
        run = noise_run(n, seed, 0.6)
        (tmp_path / FOLDER / f"{run.arm}-seed{seed}.json").write_text(json.dumps(run.to_json()))
    assert len(load_noise_runs(tmp_path)) == 3
    assert [r.seed for r in load_noise_runs(tmp_path, sizes=[3], seeds=[1])] == [1]
    assert load_noise_runs(tmp_path / "absent") == []
