"""The edit-effort benchmark: its summary arithmetic and target verdict on hand-made records, the
cross-anatomy split, and a tiny end-to-end run (a few fine-tuning steps, affine registration)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from asfda.benchmark.effort import edit_effort
from asfda.benchmark.effort.edit_effort import EffortConfig, run_edit_effort
from asfda.benchmark.effort.edit_effort_summary import (
    CORRECTED_FROM,
    MODEL,
    SERVED,
    EffortRecord,
    PairSet,
    cross_anatomy,
    difference_matrix,
    summarize,
)
from asfda.config import FinetuneConfig
from asfda.proposals import DeformableStage, ProposalChoice, ProposalKind, RegistrationSettings
from tqdm.auto import tqdm

KINDS = ("majority", "weighted", "agreement")


def records(
    gains: dict[int, float], seeds: int = 6, cases: int = 5, noise: float = 0.01
) -> list[EffortRecord]:
    """Served = model + gains[budget] (+ noise); the model at 0.5; every case from one anatomy."""
    rng = np.random.default_rng(0)
    out = []
    for seed in range(seeds):
        for budget, gain in gains.items():
            for case in range(cases):
                served = 0.5 + gain + noise * rng.standard_normal()
                dice = {MODEL: 0.5, SERVED: served, **{k: served for k in KINDS}}
                out.append(
                    EffortRecord(
                        seed, budget, f"case{case}", "icbm152", ("icbm152",) * budget, "majority", dice
                    )
                )
    return out


def test_summary_means_and_intervals_follow_the_records():
    summary = summarize(records({0: 0.0, 1: 0.15, 2: 0.2, 3: 0.1}), KINDS)
    served = summary["budgets"]["2"]["pairs"]["all"][SERVED]
    assert served["difference"] == pytest.approx(0.2, abs=0.01)
    assert served["dice"] == pytest.approx(0.7, abs=0.01)
    assert served["model_dice"] == pytest.approx(0.5)
    assert served["ci"][0] < served["difference"] < served["ci"][1]
    assert served["ci"][0] > 0.15 and served["p_seeds"] < 0.05
    assert (served["seeds"], served["query_cases"]) == (6, 5)
    assert summary["verdict"]["met"], summary["verdict"]["misses"]


def test_verdict_fails_without_the_gain_at_one_labelled_case():
    result = summarize(records({0: 0.0, 1: 0.0, 2: 0.2}), KINDS)["verdict"]
    assert not result["met"]
    assert any(miss.startswith("1 labelled") for miss in result["misses"])


def test_verdict_fails_when_the_served_start_may_be_worse_than_the_model():
    result = summarize(records({0: 0.0, 1: 0.15, 2: 0.2, 3: -0.03}), KINDS)["verdict"]
    assert not result["met"]
    assert [m for m in result["misses"] if m.startswith("3 labelled")], result["misses"]


def test_cross_anatomy_pairs_are_those_with_no_support_from_the_query_anatomy():
    same = EffortRecord(0, 2, "a", "icbm152", ("icbm152", "fsaverage"), "model", {MODEL: 0.5, SERVED: 0.9})
    cross = EffortRecord(0, 2, "b", "fsaverage", ("icbm152", "icbm152"), "model", {MODEL: 0.5, SERVED: 0.2})
    mixed = EffortRecord(0, 2, "c", "fsaverage", ("icbm152", "fsaverage"), "model", {MODEL: 0.5, SERVED: 0.6})
    nothing = EffortRecord(0, 0, "b", "fsaverage", (), "model", {MODEL: 0.5, SERVED: 0.5})
    assert cross_anatomy(cross) and not cross_anatomy(same) and not cross_anatomy(mixed)
    assert not cross_anatomy(nothing)
    pairs = [same, cross, mixed, nothing]
    matrix, _, cases = difference_matrix(pairs, 2, SERVED, PairSet.CROSS_ANATOMY)
    assert cases == ["b"] and matrix.tolist() == [[pytest.approx(-0.3)]]
    matrix, _, cases = difference_matrix(pairs, 2, SERVED, PairSet.SAME_ANATOMY)
    assert cases == ["a", "c"] and matrix.ravel().tolist() == [pytest.approx(0.4), pytest.approx(0.1)]
    assert difference_matrix(pairs, 0, SERVED, PairSet.CROSS_ANATOMY)[0].size == 0


def test_a_case_cross_in_one_seed_only_is_left_out_of_the_cross_anatomy_rectangle():
    first = EffortRecord(0, 1, "b", "fsaverage", ("icbm152",), "model", {MODEL: 0.5, SERVED: 0.2})
    second = EffortRecord(1, 1, "b", "fsaverage", ("fsaverage",), "model", {MODEL: 0.5, SERVED: 0.7})
    matrix, seeds, cases = difference_matrix([first, second], 1, SERVED, PairSet.CROSS_ANATOMY)
    assert seeds == [0] and cases == ["b"]


def test_tiny_end_to_end_run_writes_resumable_seeds_and_a_summary(
    tmp_path, tiny_dataset, tiny_model, monkeypatch
):
    config = EffortConfig(
        seeds=(0,),
        budgets=(0, 1, 2),
        max_queries=1,
        finetune=FinetuneConfig(steps=2, steps_per_labelled=0, batch_size=1),
        registration=RegistrationSettings(deformable=DeformableStage.NONE, affine_iterations=10),
    )
    summary = run_edit_effort(tiny_dataset.root, tiny_model, tmp_path, config, progress=False)
    run = json.loads((tmp_path / "runs" / "seed0.json").read_text())
    assert len(run["labelled"]) == 2 and not set(run["labelled"]) & set(run["queries"])
    assert len(run["records"]) == 3 * 1
    by_budget = {b: [r for r in run["records"] if r["budget"] == b] for b in (0, 1, 2)}
    assert all(r["served"] == MODEL for r in by_budget[0])
    assert all(r["served"] == config.single_case.value == "weighted" for r in by_budget[1])  # one-case rule
    assert all(np.isnan(r["dice"]["majority"]) for r in by_budget[0])
    for record in by_budget[1] + by_budget[2]:
        assert all(0.0 <= record["dice"][k] <= 1.0 for k in (MODEL, *KINDS, SERVED))
        assert record["dice"][SERVED] == record["dice"][record["served"]]
    assert set(summary["budgets"]) == {"0", "1", "2"}
    assert summary["budgets"]["0"]["pairs"]["all"][SERVED]["difference"] == 0.0
    assert (tmp_path / "results.md").read_text().startswith("# Edit effort")
    assert run["leave_one_out"] == CORRECTED_FROM and summary["leave_one_out"] == [CORRECTED_FROM]
    assert "predicted by the model before it was labelled" in (tmp_path / "results.md").read_text()

    def measured_again(*args, **kwargs):
        raise AssertionError("a finished seed was measured again")

    written = (tmp_path / "summary.json").read_text()
    monkeypatch.setattr(edit_effort, "run_seed", measured_again)
    run_edit_effort(tiny_dataset.root, tiny_model, tmp_path, config, progress=False)
    assert (tmp_path / "summary.json").read_text() == written


def test_the_leave_one_out_predicts_case_i_by_the_model_at_budget_i(monkeypatch):
    """As the product predicts a labelled case by the version it was corrected from: case i was labelled
    after i others, so its prediction is the model at budget i's (never trained on it), not the one at k's."""
    pool = [SimpleNamespace(name=f"case{i}", anatomy="icbm152", case=f"support{i}") for i in range(5)]
    trained = []

    def budget_model(source, labelled, config, seed):
        trained.append(len(labelled))
        return SimpleNamespace(budget=len(labelled))

    given = {}

    def leave_one_out(cases, predictions, num_classes, **options):
        given[len(cases)] = list(predictions)
        return ProposalChoice(ProposalKind.MODEL, len(cases))

    monkeypatch.setattr(edit_effort, "budget_model", budget_model)
    monkeypatch.setattr(edit_effort, "probabilities", lambda model, case, device: (model.budget, case.name))
    monkeypatch.setattr(edit_effort, "choose_proposal", leave_one_out)
    config = EffortConfig(budgets=(0, 2, 3))
    run = edit_effort.run_seed(0, Path("source"), pool, [], 2, config, tqdm(disable=True))

    labelled = run["labelled"]
    assert set(given) == {0, 2, 3}
    for budget, predictions in given.items():
        assert predictions == [(i, labelled[i]) for i in range(budget)]
    assert trained == [0, 1, 2, 3]  # the model at 1 is trained though not measured: it predicts case 1
    assert run["choices"]["3"]["model_budgets"] == {name: i for i, name in enumerate(labelled)}
    assert run["leave_one_out"] == CORRECTED_FROM


def test_the_command_line_reads_a_seed_count_or_the_seeds_and_keeps_the_recipe_unless_told():
    from asfda.benchmark.effort.edit_effort_cli import config_from_args
    from asfda.cli.main import build_parser

    def config(*options):
        return config_from_args(
            build_parser().parse_args(["proposals-bench", "--dataset", "d", "--out", "o", *options])
        )

    assert config().seeds == tuple(range(8)) and config("--seeds", "3").seeds == (0, 1, 2)
    assert config("--seeds", "4", "9").seeds == (4, 9)
    assert config().finetune == FinetuneConfig() and config().registration == RegistrationSettings()
    short = config("--finetune-steps", "2", "--affine-only")
    assert (short.finetune.steps, short.finetune.steps_per_labelled) == (2, 0)
    assert short.registration.deformable is DeformableStage.NONE
