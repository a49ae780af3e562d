"""The oracle's greedy forward search on a fake evaluation (no model): it keeps, at each step, the
candidate whose labelled set scores best, tries only its seeded subset of candidates, and resumes."""

import json

import pytest
from asfda.benchmark.running.oracle import (
    ORACLE_ARM,
    OracleStep,
    greedy_oracle,
    load_oracle_runs,
    search_cost,
)
from asfda.benchmark.running.results import RunResult
from asfda.errors import ASFDAError

POOL = [f"tgt_{i:03d}" for i in range(10)]
GAIN = {name: 0.01 * i for i, name in enumerate(POOL)}  # tgt_009 adds most on its own


def score(labelled):
    """Validation Dice of a set: each case's own gain, and tgt_002 is worth 0.5 once tgt_009 is in."""
    bonus = 0.5 if {"tgt_009", "tgt_002"} <= set(labelled) else 0.0
    return sum(GAIN[c] for c in labelled) + bonus


def test_each_step_keeps_the_case_that_raises_the_score_most():
    calls = []
    steps = greedy_oracle(POOL, 3, lambda s: calls.append(s) or score(s), candidates=0)
    assert [s.picked for s in steps] == ["tgt_009", "tgt_002", "tgt_008"]
    assert steps[1].validation_dice == pytest.approx(0.09 + 0.02 + 0.5)
    assert len(steps[0].tried) == 10 and len(steps[1].tried) == 9 and len(calls) == 10 + 9 + 8
    assert all(s[:1] == ("tgt_009",) for s in calls[10:])  # later steps grow the kept set


def test_a_candidate_cap_tries_a_seeded_subset_and_keeps_its_best():
    steps = greedy_oracle(POOL, 2, score, candidates=3, seed=4)
    for step in steps:
        assert len(step.tried) == 3 and step.picked == max(step.tried, key=step.tried.get)
    assert [s.picked for s in greedy_oracle(POOL, 2, score, candidates=3, seed=4)] == [
        s.picked for s in steps
    ]
    assert search_cost(60, 6, 8) == 48 and search_cost(10, 3, 0) == 27 and search_cost(5, 3, 4) == 4 + 4 + 3


def test_an_interrupted_search_resumes_where_it_stopped():
    whole = greedy_oracle(POOL, 3, score, candidates=4, seed=1)
    calls = []
    resumed = greedy_oracle(POOL, 3, lambda s: calls.append(s) or score(s), 4, 1, done=whole[:2])
    assert [s.picked for s in resumed] == [s.picked for s in whole] and len(calls) == 4


def test_bad_sizes_are_refused_and_saved_runs_load(tmp_path):
    with pytest.raises(ASFDAError, match="1 to 10"):
        greedy_oracle(POOL, 11, score)
    (tmp_path / "oracle").mkdir()
    (tmp_path / "oracle" / f"{ORACLE_ARM}-seed0.json").write_text(
        json.dumps(RunResult("oracle", 0, "x", []).to_json())
    )
    (tmp_path / "oracle" / f"{ORACLE_ARM}-seed0-search.json").write_text("{}")
    assert [r.arm for r in load_oracle_runs(tmp_path)] == ["oracle"] and load_oracle_runs(
        tmp_path / "none"
    ) == []
    assert OracleStep("a", 0.5).tried == {}


def test_the_oracle_command_searches_on_validation_and_scores_its_set_on_test(
    tmp_path, tiny_dataset, tiny_model, monkeypatch
):
    """``asfda oracle`` end to end on a folder of the tiny dataset's 6 cases (3 pool / 1 val / 2 test), with
    a one-step recipe: only the final set is scored on test."""
    from dataclasses import replace

    from asfda.benchmark.running.config import BenchmarkConfig
    from asfda.benchmark.running.oracle import SetTrainer
    from asfda.cli.main import main
    from asfda.config import FinetuneConfig

    folder = tmp_path / "cases"
    for kind, column in (("images", 0), ("labels", 1)):
        (folder / kind).mkdir(parents=True)
        for pair in (*tiny_dataset.pool, *tiny_dataset.test):
            (folder / kind / pair[0].name).symlink_to(pair[column])
    monkeypatch.setattr(
        BenchmarkConfig,
        "recipe",
        property(lambda self: replace(FinetuneConfig(), steps=1, steps_per_labelled=0)),
    )
    calls = []
    run = SetTrainer.run
    monkeypatch.setattr(
        SetTrainer,
        "run",
        lambda self, labelled, on_test: calls.append(on_test) or run(self, labelled, on_test),
    )
    out = tmp_path / "out"
    argv = ["oracle", "--dataset", str(folder), "--model", str(tiny_model), "--out", str(out), "--size", "2"]
    assert main([*argv, "--candidates", "2", "--device", "cpu", "--no-progress"]) == 0
    assert calls == [False] * 4 + [True]  # 2 + 2 candidates on validation, then the set once on test
    search = json.loads((out / "oracle" / "oracle-seed0-search.json").read_text())
    assert [len(step["tried"]) for step in search["steps"]] == [2, 2]
    (oracle,) = load_oracle_runs(out)
    record = oracle.at(2)
    assert record.picked == [s["picked"] for s in search["steps"]] and len(record.per_case_dice) == 2
    assert record.validation_split_dice and record.test_dice is not None
