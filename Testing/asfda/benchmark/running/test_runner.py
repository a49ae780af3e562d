"""A tiny benchmark end to end through the command line (two strategies, one seed, one round), its resume,
and the pieces it is planned from."""

import argparse
import csv
import json
import shutil
from dataclasses import replace

import pytest
from asfda.benchmark.cli import command_line
from asfda.benchmark.running.arms import DEFAULT_QUERY, QUERY_ARMS
from asfda.benchmark.running.config import BenchmarkConfig
from asfda.benchmark.running.results import RunResult
from asfda.benchmark.running.runner import (
    ARMS,
    CEILING,
    KNOWN_ARMS,
    ScoringMeter,
    Window,
    ceiling_steps_used,
    plan_jobs,
    plan_training_noise,
    prepare_model,
)
from asfda.cli.main import main
from asfda.config import FinetuneConfig, config_to_dict, round_steps
from asfda.errors import ASFDAError
from asfda.models.spec import ModelSpec
from asfda.session import session as session_module

# The plumbing runs a one-step recipe (the shipped one trains 120 steps a round here: minutes on 2 cores);
# that the headline arm runs the shipped recipe is test_arms.py's to show.
ONE_STEP = replace(FinetuneConfig(), steps=1, steps_per_labelled=0)


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory, tiny_dataset, tiny_model):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BenchmarkConfig, "recipe", property(lambda self: ONE_STEP))
        return run_tiny_benchmark(tmp_path_factory, tiny_dataset, tiny_model)


def run_tiny_benchmark(tmp_path_factory, tiny_dataset, tiny_model):
    out = tmp_path_factory.mktemp("benchmark")
    argv = [
        "benchmark",
        "--dataset",
        str(tiny_dataset.root),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--strategies",
        "asfda",
        "random",
        "--asfda-fine-tuning",
        "ssl-relative",
        "--seeds",
        "0",
        "--schedule",
        "1",
        "--device",
        "cpu",
        "--in-process",
        "--no-all-labelled",
        "--training-noise",
        "1",
        "--no-progress",
    ]
    assert main(argv) == 0
    return out, argv


def test_outputs_are_produced_and_sane(tiny_benchmark, tiny_dataset):
    out, _ = tiny_benchmark
    for name in (
        "results.md",
        "results.csv",
        "records.csv",
        "costs.md",
        "curves.png",
        "run.json",
        "pretrained_scoring.json",
        "runs/source-only.json",
        "runs/asfda-seed0.json",
        "runs/random-seed0.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "work" / "asfda-seed0").exists()  # finished sessions are not kept

    rows = {(r["strategy"], r["n_labelled"]): r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {
        ("source-only", "0"),
        ("asfda", "1"),
        ("asfda", "auc"),
        ("random", "1"),
        ("random", "auc"),
    }
    for row in rows.values():
        assert 0.0 <= float(row["dice_mean"]) <= 1.0
    assert (
        rows[("asfda", "1")]["dice_mean"] == rows[("asfda", "auc")]["dice_mean"]
    )  # one point is its own area

    runs = {
        name: RunResult.from_json(json.loads((out / "runs" / f"{name}-seed0.json").read_text()))
        for name in ("asfda", "random")
    }
    for run in runs.values():
        assert [r.round for r in run.records] == [0, 1] and run.records[1].n_labelled == 1
        assert len(run.records[1].picked) == 1 and run.peak_rss_mib > 0
        assert run.records[1].pseudo_labelled == 0  # a random model is never confident enough
    # The source model is evaluated once (the floor), not in every run's round 0.
    assert runs["asfda"].records[0].test_dice is None and runs["random"].records[0].test_dice is None
    floor = RunResult.from_json(json.loads((out / "runs" / "source-only.json").read_text()))
    assert 0.0 <= floor.records[0].test_dice <= 1.0 and floor.records[0].n_labelled == 0
    assert runs["asfda"].fine_tuning == "semi-supervised" and runs["random"].fine_tuning == "supervised"
    # Round 1 ranks from the shared scoring of the pool; random never scores.
    assert [c.passes for c in runs["asfda"].scoring] == [0, 0]
    assert [c.passes for c in runs["random"].scoring] == [0, 0]

    # Every round records the scores its query saw for every pool case, and the guard's outcome.
    scores = runs["asfda"].records[1].query_scores
    assert len(scores.cases) == len(tiny_dataset.pool) and scores.rank == list(
        range(1, len(scores.cases) + 1)
    )
    assert runs["asfda"].records[1].picked == scores.cases[:1]
    assert len(scores.knowledge_gap) == len(scores.asd) == len(scores.typicality) == len(scores.cases)
    random_scores = runs["random"].records[1].query_scores
    assert random_scores.knowledge_gap is None and len(random_scores.score) == len(tiny_dataset.pool)
    guard = runs["asfda"].records[1].guard
    assert guard.accepted and guard.candidate_test_dice == runs["asfda"].records[1].test_dice
    assert guard.parent_test_dice is None  # the source model is evaluated once, in source-only.json

    scoring = json.loads((out / "pretrained_scoring.json").read_text())
    assert scoring["ours"]["passes_per_volume"] == 1.0
    assert "epistemic" not in scoring  # MC dropout is paid for only when the epistemic arm runs
    summary = json.loads((out / "summary.json").read_text())
    assert [c["strategy"] for c in summary["comparisons"]] == ["random"]
    assert {"difference", "ci_low", "ci_high", "p_value", "p_value_seeds"} <= set(summary["comparisons"][0])
    assert summary["guard"]["rounds"] == 3 and summary["guard"]["kept"]["n"] == 3  # accept_worse
    assert summary["guard"]["kept"]["unknown"] == 0  # round 1's parent: the source model's Dice
    noise = summary["training_noise"]["sets"]["1"]
    assert noise["n_seeds"] == 1 and list(noise["per_seed"]) == ["0"] and len(noise["cases"]) == 1
    noise_run = RunResult.from_json(
        json.loads((out / "training_noise" / "training-noise-1-seed0.json").read_text())
    )
    assert noise_run.records[1].picked == noise["cases"] and noise_run.records[1].query_scores is None
    assert noise_run.fine_tuning == "semi-supervised"  # the full method's fine-tuning (ssl-relative here)
    assert len(scoring["ours"]["seconds"]) == len(tiny_dataset.pool)

    info = json.loads((out / "run.json").read_text())
    assert info["command"].startswith("asfda benchmark --dataset") and "--schedule 1" in info["command"]
    assert info["ceiling_steps"] == round_steps(ONE_STEP, 1)  # the one round of --schedule 1
    # run.json names the fine-tuning the headline arm ran: the recipe, with the model's window
    product = config_to_dict(replace(ONE_STEP, patch_size=[32, 32, 32]))  # as JSON has it
    assert info["finetune_defaults"] == {
        **product,
        "seed": 0,
        "semi_supervised": True,
        "tau_conf_quantile": 0.75,
    }
    assert info["machine"]["cpu_count"] and info["git_commit"] and info["started"] and info["finished"]
    assert {r["strategy"] for r in info["runs"]} == {"source-only", "asfda", "random"}
    assert info["full_method"]["fine_tuning"] == "ssl-relative"
    assert "| asfda | semi-supervised |" in (out / "results.md").read_text()
    assert "| random | 0 | 0 (needs no scores) |" in (out / "costs.md").read_text()


def test_a_rerun_skips_the_finished_runs(tiny_benchmark, capsys):
    out, argv = tiny_benchmark
    saved = {
        p.name: p.stat().st_mtime_ns for p in (*(out / "runs").iterdir(), *(out / "training_noise").iterdir())
    }
    assert main(argv) == 0
    assert {
        p.name: p.stat().st_mtime_ns for p in (*(out / "runs").iterdir(), *(out / "training_noise").iterdir())
    } == saved
    assert main([*argv, "--report-only"]) == 0
    assert "| asfda |" in capsys.readouterr().out


def test_a_rebuilt_report_names_the_machine_the_runs_ran_on(tiny_benchmark, tmp_path):
    out, argv = tiny_benchmark
    copy = shutil.copytree(out, tmp_path / "copy")
    run = json.loads((copy / "run.json").read_text())
    run["machine_summary"], run["git_commit"] = "16 CPU cores, GPU: an H100", "abc123"
    (copy / "run.json").write_text(json.dumps(run))
    rebuilt = [str(copy) if word == str(out) else word for word in argv]
    assert main([*rebuilt, "--report-only"]) == 0
    assert json.loads((copy / "run.json").read_text())["machine_summary"] == "16 CPU cores, GPU: an H100"
    assert (
        "GPU: an H100" in (copy / "results.md").read_text() and "abc123" in (copy / "results.md").read_text()
    )


def test_whole_volume_window_covers_every_volume(tmp_path, tiny_dataset, tiny_model):
    images = [image for image, _ in (*tiny_dataset.pool, *tiny_dataset.test)]
    folder, own = prepare_model(tiny_model, tmp_path / "model", Window.VOLUME, images)
    spec = ModelSpec.load(folder)
    assert own == (32, 32, 32) and all(side % 16 == 0 for side in spec.roi_size)
    assert all(side >= size for side, size in zip(spec.roi_size, tiny_dataset.size))
    assert prepare_model(tiny_model, tmp_path / "unused", Window.MODEL, images) == (tiny_model.resolve(), own)


def test_plan_pairs_seeds_and_gives_the_ceiling_a_whole_schedule_of_steps(tmp_path, tiny_dataset):
    config = BenchmarkConfig(arms=("ssl-late-classwise", "random"), seeds=(0, 1), schedule=(1, 2))
    jobs = plan_jobs(
        config, tiny_dataset, tmp_path / "model", (16, 16, 16), tmp_path / "out", tmp_path / "work"
    )
    assert [job.name for job in jobs] == [
        "ssl-late-classwise-seed0",
        "random-seed0",
        "all-labelled-seed0",
        "ssl-late-classwise-seed1",
        "random-seed1",
        "all-labelled-seed1",
    ]
    ceiling = jobs[2]
    assert ceiling.arm is CEILING and ceiling.schedule == (len(tiny_dataset.pool),)
    recipe = FinetuneConfig()
    whole_schedule = round_steps(recipe, 1) + round_steps(recipe, 2)
    assert ceiling.finetune.steps == whole_schedule and ceiling.finetune.steps_per_labelled == 0
    assert not ceiling.finetune.semi_supervised
    assert jobs[0].finetune.semi_supervised and jobs[0].finetune.seed == 0 and jobs[3].finetune.seed == 1
    assert jobs[0].finetune.teacher_start_fraction == 0.5 and jobs[0].finetune.classwise_pseudo_labels
    assert replace(jobs[1].finetune, seed=0, patch_size=None) == recipe  # a query arm: the shipped recipe
    assert all(job.steps_per_labelled == 0 for job in jobs)  # the rule lives in the FinetuneConfig
    # the semi-supervised arm follows the default query, like the full method, which is supervised
    twin = QUERY_ARMS[DEFAULT_QUERY]
    assert twin.strategy is ARMS["asfda"].strategy is ARMS["ssl-late-classwise"].strategy
    assert ARMS["ssl-late-classwise"].semi_supervised and not ARMS["asfda"].semi_supervised


def test_the_ceiling_gets_the_steps_per_labelled_case_of_the_whole_schedule():
    config = BenchmarkConfig(arms=("random",), schedule=(2, 3, 6, 12))
    recipe = FinetuneConfig()
    # 4 rounds of the recipe's steps plus its steps per labelled case: 100 x 4 + 20 x (2 + 3 + 6 + 12) = 860
    expected = 4 * recipe.steps + recipe.steps_per_labelled * (2 + 3 + 6 + 12)
    assert config.ceiling_steps(config.schedule) == expected
    assert replace(config, all_labelled_steps=50).ceiling_steps(config.schedule) == 50


def test_a_report_rebuilt_from_older_runs_names_the_ceiling_steps_they_had():
    config = BenchmarkConfig(arms=("random",), budgets=(10, 20))
    recipe = FinetuneConfig()
    saved_before = {"command": "asfda benchmark ..."}  # a run.json written before ceiling_steps existed
    legacy = recipe.steps * 2  # steps x rounds, as those runs had
    assert ceiling_steps_used(config, saved_before, 60, report_only=True) == legacy
    assert ceiling_steps_used(config, {"ceiling_steps": 555}, 60, report_only=True) == 555
    now = 2 * recipe.steps + recipe.steps_per_labelled * (6 + 12)
    assert ceiling_steps_used(config, {"ceiling_steps": 555}, 60, report_only=False) == now


def test_the_recorded_command_names_the_budgets_not_the_schedule_they_replace():
    args = argparse.Namespace(schedule=[1, 2, 4, 8], budgets=[2.5, 10.0], steps=3, func=print)
    assert command_line("benchmark", args) == "asfda benchmark --budgets 2.5 10.0 --steps 3"
    args.budgets = None
    assert command_line("benchmark", args) == "asfda benchmark --schedule 1 2 4 8 --steps 3"


def test_config_refuses_unknown_strategies_and_bad_schedules():
    with pytest.raises(ASFDAError):
        BenchmarkConfig(arms=("asfda", "magic"))
    with pytest.raises(ASFDAError):
        BenchmarkConfig(schedule=(4, 2))


def test_meter_restores_the_session_functions():
    predict, score_case = session_module.predict, session_module.score_case
    meter = ScoringMeter()
    with meter.installed():
        assert session_module.predict is not predict
    assert session_module.predict is predict and session_module.score_case is score_case


def test_budgets_are_fractions_of_the_pool_with_a_pre_stated_endpoint():
    config = BenchmarkConfig(arms=("random",), budgets=(2.5, 5, 10, 20), endpoint_percent=10)
    assert config.resolved_schedule(60) == (2, 3, 6, 12) and config.endpoint(60) == 6
    assert config.resolved_schedule(16) == (1, 2, 3) and config.endpoint(16) == 2  # 2.5 and 5 % merge
    assert BenchmarkConfig(arms=("random",), schedule=(1, 2, 4)).resolved_schedule(60) == (1, 2, 4)
    with pytest.raises(ASFDAError, match="asfda-query"):
        BenchmarkConfig(arms=("random",), asfda_query="nonsense")
    with pytest.raises(ASFDAError, match="asfda-fine-tuning"):
        BenchmarkConfig(arms=("random",), asfda_fine_tuning="nonsense")
    assert BenchmarkConfig(arms=("random",)).full_fine_tuning == "supervised"


def test_training_noise_trains_with_the_recipe_asked_for(tmp_path, tiny_dataset):
    """--training-noise-recipe: the fixed sets train with that recipe arm's fine-tuning, else the full
    method's (the shipped recipe)."""
    args = (tiny_dataset, tmp_path / "model", (16, 16, 16), tmp_path / "out", tmp_path / "work")
    shipped = plan_training_noise(BenchmarkConfig(arms=("asfda",), seeds=(0, 1), training_noise=(2,)), *args)
    assert [job.name for job in shipped] == ["training-noise-2-seed0", "training-noise-2-seed1"]
    assert replace(shipped[1].finetune, seed=0, patch_size=None) == FinetuneConfig()
    config = BenchmarkConfig(
        arms=("asfda",), seeds=(0,), training_noise=(2,), training_noise_recipe="recipe-cosine-average"
    )
    (old,) = plan_training_noise(config, *args)
    expected = replace(FinetuneConfig(), **dict(KNOWN_ARMS["recipe-cosine-average"].finetune_overrides))
    assert replace(old.finetune, patch_size=None) == expected
    assert old.fixed_labelled == shipped[0].fixed_labelled
    with pytest.raises(ASFDAError, match="recipe arm"):
        BenchmarkConfig(arms=("asfda",), training_noise=(2,), training_noise_recipe="random")


def test_the_endpoint_of_a_schedule_is_the_stated_share_when_the_schedule_reaches_it():
    from asfda.benchmark.running.config import BenchmarkConfig

    assert BenchmarkConfig(schedule=(1, 2, 3, 4), endpoint_percent=10.0).endpoint(40) == 4
    assert BenchmarkConfig(schedule=(1, 2, 5), endpoint_percent=10.0).endpoint(40) == 2  # middle round
