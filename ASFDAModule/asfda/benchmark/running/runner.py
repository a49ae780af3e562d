"""The benchmark runs: every query strategy adapts the source model to the target pool at the same
annotation schedule, the reference masks playing the annotator, for several seeds, with the costs metered in
the same run.

A *run* is one (strategy, seed): a fresh session, round 0 = the source model, then one round per entry of
the schedule (query, label from the reference masks, fine-tune from the last weights, evaluate on the
held-out test cases). Its result is saved as ``OUT/runs/<strategy>-seed<k>.json`` when it finishes; a rerun
skips the runs already saved, so an interrupted benchmark resumes where it stopped.

Choices that make the comparison fair and the run affordable (each one a field of :class:`BenchmarkConfig`):

- Every arm fine-tunes with the shipped recipe (``FinetuneConfig()``: what ``asfda create`` gives a user),
  its run's seed (seed k of one strategy is paired with seed k of every other) and the model's own window
  as the patch, then the arm's own ``finetune_overrides`` (none for the query arms and the full method
  ``asfda``; ``recipe-2026-11`` and the recipe variants change the fine-tuning, the semi-supervised arms add
  their part). No flag changes the headline arm's training: a test keeps it equal to the product default.
- The all-labelled ceiling labels the whole pool at once and trains, with the shipped recipe, for the total
  steps the headline arm gets over its whole schedule: the same training compute, every label.
- The pool is scored once by the pretrained model (ours and MC dropout, timed separately) and every run's
  round 1 starts from those cached scores: they are the same numbers in every run, computed once.
- Inference uses one window over the whole volume (``window="volume"``, the model's window grown to cover
  the largest volume) instead of the model's overlapping 48^3 windows: for a fully convolutional network in
  eval mode it is the same per-voxel function up to border effects, and it is several times cheaper on a
  CPU. Fine-tuning patches keep the model's own window size unless ``patch_size`` says otherwise.

Layout::

    OUT/runs/<strategy>-seed<k>.json   a finished run (records and costs): the resume key
    OUT/pretrained_scoring.json        the one-off scoring of the pool by the pretrained model
    OUT/results.md, results.csv, records.csv, costs.md, curves.png, run.json  (writing.py, provenance.py)
    WORK/model/                        the source model with the benchmark's inference window
    WORK/shared/                       the session that scored the pool with the pretrained model
    WORK/<strategy>-seed<k>/           a run's session (deleted when the run is saved, unless kept)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from ...config import config_to_dict
from ...io.volumes import case_name
from ...models.spec import SPEC_FILE, ModelSpec
from ..analysis.writing import write_report
from ..datasets.folder import as_benchmark_dataset, open_dataset
from ..datasets.layout import DatasetLayout
from .arms import ARMS, CANDIDATES, CEILING, FULL_METHOD, KNOWN_ARMS, QUERY_ARMS, Arm, full_method
from .config import BenchmarkConfig
from .execution import Job, execute, run_job
from .preparation import (
    ScoringMeter,
    Window,
    evaluate_source,
    peak_rss_mib,
    prepare_model,
    score_pool_once,
    set_threads,
    split_folders,
    volume_window,
    warm_scores,
)
from .provenance import (
    as_run,
    ceiling_steps_used,
    config_json,
    git_commit,
    invocations,
    machine,
    previous_run,
)
from .results import ALL_LABELLED, SOURCE_ONLY, RunResult
from .training_noise import fixed_sets, noise_jobs

# Re-exported: the pieces live in arms.py, config.py, preparation.py and execution.py.
__all__ = [
    "ARMS",
    "CEILING",
    "KNOWN_ARMS",
    "Arm",
    "BenchmarkConfig",
    "Job",
    "ScoringMeter",
    "Window",
    "evaluate_source",
    "peak_rss_mib",
    "prepare_model",
    "run_job",
    "score_pool_once",
    "split_folders",
    "volume_window",
    "warm_scores",
]


@dataclass
class BenchmarkOutcome:
    results: list[RunResult]
    failures: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


# -- the whole benchmark ----------------------------------------------------------------------------------
def plan_jobs(
    config: BenchmarkConfig,
    layout: DatasetLayout,
    model: Path,
    patch: tuple[int, int, int],
    out: Path,
    work: Path,
    full: Arm | None = None,
    arms: Sequence[str] | None = None,
) -> list[Job]:
    """Seed by seed, every strategy then the ceiling: an interrupted benchmark has whole seeds first.

    ``full`` is the full method's arm (its query resolved); ``arms`` restricts the plan to those names."""
    jobs = []
    names = [name for name in config.arms if arms is None or name in arms]
    arms_used = [full if name == FULL_METHOD and full else KNOWN_ARMS[name] for name in names]
    arms_used += [CEILING] if config.all_labelled and (arms is None or ALL_LABELLED in arms) else []
    schedule_all = config.resolved_schedule(len(layout.pool))
    extra = [(QUERY_ARMS["random"], seed) for seed in config.random_seeds if "random" in names]
    for arm, seed in [(arm, seed) for seed in config.seeds for arm in arms_used] + extra:
        schedule = (len(layout.pool),) if arm is CEILING else schedule_all
        finetune = config.finetune(arm, seed, patch)
        if arm is CEILING:  # one round with every case: the headline's steps over its whole schedule
            finetune = replace(finetune, steps=config.ceiling_steps(schedule_all), steps_per_labelled=0)
        name = f"{arm.name}-seed{seed}"
        jobs.append(
            Job(
                arm,
                seed,
                schedule,
                finetune,
                model,
                layout.root,
                work / name,
                work / "shared",
                out / "runs" / f"{name}.json",
                work / f"{name}.log",
                config.device,
                config.threads,
                config.keep_sessions,
                0,  # the steps per labelled case are the fine-tuning's own (FinetuneConfig)
                out / "models" / name if arm.name == FULL_METHOD and seed == config.seeds[0] else None,
            )
        )
    return jobs


def plan_training_noise(
    config: BenchmarkConfig,
    layout: DatasetLayout,
    model: Path,
    patch: tuple[int, int, int],
    out: Path,
    work: Path,
    full: Arm | None = None,
) -> list[Job]:
    """The training-noise runs: for each fixed labelled set, the full method's job of every seed, one round
    on that set (the same fine-tuning the full method's runs get, or ``training_noise_recipe``'s)."""
    if not config.training_noise:
        return []
    headline = replace(config, arms=(FULL_METHOD,), all_labelled=False, random_seeds=())
    full = full or ARMS[FULL_METHOD]
    if config.training_noise_recipe != FULL_METHOD:  # the full method's jobs with that recipe's training
        full = replace(full, finetune_overrides=KNOWN_ARMS[config.training_noise_recipe].finetune_overrides)
    jobs = plan_jobs(headline, layout, model, patch, out, work, full, [FULL_METHOD])
    sets = fixed_sets([case_name(image) for image, _ in layout.pool], config.training_noise)
    return noise_jobs(jobs, sets, out, work)


def load_results(out: Path) -> list[RunResult]:
    return [
        RunResult.from_json(json.loads(p.read_text())) for p in sorted((Path(out) / "runs").glob("*.json"))
    ]


def ordered(results: list[RunResult], config: BenchmarkConfig) -> list[RunResult]:
    order = {name: i for i, name in enumerate([SOURCE_ONLY, *config.arms, ALL_LABELLED])}
    seeds = {*config.seeds, *config.random_seeds}
    return sorted(
        (r for r in results if r.arm in order and (r.seed in seeds or r.arm == SOURCE_ONLY)),
        key=lambda r: (order[r.arm], r.seed),
    )


def resolve_full_method(
    config: BenchmarkConfig, out: Path, endpoint: int | None = None, final: bool = False
) -> tuple[Arm, dict]:
    """The full method's arm and how its query was chosen. With ``asfda_query="auto"`` and candidates in
    the benchmark, the query is the candidate with the best mean *validation-split* Dice at the endpoint
    (the test set is never looked at); until those runs exist, ``waits`` is True."""
    from ..analysis.statistics import choose_by_validation
    from .arms import DEFAULT_QUERY

    if config.asfda_query not in ("auto", "default"):
        return full_method(config.asfda_query, config.full_fine_tuning), {
            "query": config.asfda_query,
            "chosen_by": "--asfda-query",
            "waits": False,
        }
    candidates = [name for name in CANDIDATES if name in config.arms]
    if config.asfda_query == "default" or not candidates or FULL_METHOD not in config.arms:
        return full_method(DEFAULT_QUERY, config.full_fine_tuning), {
            "query": DEFAULT_QUERY,
            "chosen_by": "DEFAULT_QUERY",
            "waits": False,
        }
    if not final:
        pending = {"query": None, "chosen_by": "validation (pending)", "waits": True}
        return full_method(DEFAULT_QUERY, config.full_fine_tuning), pending
    query, table = choose_by_validation(load_results(out), candidates, endpoint)
    chosen_by = f"best mean validation-split Dice at the endpoint: {table}"
    selection = {"query": query, "chosen_by": chosen_by, "waits": True}
    return full_method(query, config.full_fine_tuning), selection


def run_benchmark(
    dataset: Path,
    model: Path,
    out: Path,
    config: BenchmarkConfig,
    work: Path | None = None,
    command: str = "",
    progress: bool = True,
    report_only: bool = False,
) -> BenchmarkOutcome:
    """Run (or resume) every (strategy, seed) and write the report. Returns the results and any failures."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clock = time.perf_counter()
    out, work = Path(out), Path(work) if work else Path(out) / "work"
    layout = open_dataset(as_benchmark_dataset(dataset, work))
    set_threads(config.threads)
    pool_images, _ = split_folders(layout, "pool")
    test_images, _ = split_folders(layout, "test")
    model_used, own_window = prepare_model(
        Path(model), work / "model", config.window, [image for image, _ in (*layout.pool, *layout.test)]
    )
    patch = own_window  # the fine-tuning patch a session would use: the model's own window
    endpoint = config.endpoint(len(layout.pool))
    full, selection = resolve_full_method(config, out, endpoint)
    first_wave = [name for name in config.arms if name != FULL_METHOD or selection["waits"] is False]
    jobs = plan_jobs(config, layout, model_used, patch, out, work, full, [*first_wave, ALL_LABELLED])
    jobs += plan_training_noise(config, layout, model_used, patch, out, work, full)
    failures: dict[str, str] = {}
    if not report_only:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        evaluate_source(model_used, layout, config.device, out / "runs" / f"{SOURCE_ONLY}.json")
        score_pool_once(
            model_used,
            pool_images,
            work / "shared",
            config.device,
            out / "pretrained_scoring.json",
            tqdm.write,
            epistemic="epistemic" in config.arms,
            progress=progress,
        )
        pending = [job for job in jobs if not job.result.is_file()]
        done = len(jobs) - len(pending)
        if done:
            tqdm.write(f"resuming: {done} of {len(jobs)} runs already saved in {out / 'runs'}")
        with tqdm(
            total=sum(len(job.schedule) + 1 for job in pending),
            desc="benchmark rounds",
            unit="round",
            disable=not progress,
        ) as bar:
            failures = execute(pending, config.workers, config.isolate or config.workers > 1, bar)
            if selection["waits"]:  # the full method's query is chosen on validation, then it runs
                full, selection = resolve_full_method(config, out, endpoint, final=True)
                second = [
                    job
                    for job in plan_jobs(config, layout, model_used, patch, out, work, full, [FULL_METHOD])
                    if not job.result.is_file()
                ]
                bar.total += sum(len(job.schedule) + 1 for job in second)
                failures |= execute(second, config.workers, config.isolate or config.workers > 1, bar)
    elif selection["waits"]:
        full, selection = resolve_full_method(config, out, endpoint, final=True)
    spec = ModelSpec.load(model_used / SPEC_FILE) if (model_used / SPEC_FILE).is_file() else None
    info = machine(str(config.device))
    previous = previous_run(out / "run.json")
    run_info = {
        "command": command,
        "dataset": str(dataset),
        "dataset_summary": (
            f"{len(layout.pool)} pool / {len(layout.val)} validation / {len(layout.test)} test target cases"
            + (f", base grid {layout.spacing_mm:g} mm" if layout.spacing_mm else "")
        ),
        "model": str(model),
        "inference_window": list(spec.roi_size) if spec else None,
        "patch_size": list(patch),
        "config": config_json(config),
        # what the headline arm ran (seed 0 shown; each run has its seed), and what other arms change
        "finetune_defaults": config_to_dict(config.finetune(full, config.seeds[0], patch)),
        "finetune_overrides": {
            name: {key: getattr(value, "value", value) for key, value in KNOWN_ARMS[name].finetune_overrides}
            for name in config.arms
            if name != FULL_METHOD and KNOWN_ARMS[name].finetune_overrides
        },
        "machine": info,
        "machine_summary": (
            f"{info['processor']}, {info['cpu_count']} CPU cores, {info.get('memory_gib', '?')} GiB, "
            f"{info['platform']}, torch {info['torch']}, {config.threads or 'default'} thread(s) per run, "
            f"{config.workers} run(s) at a time, GPU: {info['gpu'] or 'none (not run on a GPU)'}"
        ),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds_this_invocation": round(time.perf_counter() - clock, 1),
        "failures": failures,
        "full_method": {
            "query": selection["query"],
            "chosen_by": selection["chosen_by"],
            "fine_tuning": config.full_fine_tuning,
        },
        "schedule": list(config.resolved_schedule(len(layout.pool))),
        "ceiling_steps": ceiling_steps_used(config, previous, len(layout.pool), report_only),
        "endpoint": config.endpoint(len(layout.pool)),
        "n_pool": len(layout.pool),
        "case_metadata": layout.metadata,
        "example_test_case": [str(p) for p in layout.test[0]] if layout.test else None,
    }
    if report_only:
        run_info |= as_run(previous)
    run_info["invocations"] = invocations(previous, run_info, report_only)
    files = write_report(out, config, run_info, ordered(load_results(out), config))
    return BenchmarkOutcome(ordered(load_results(out), config), failures, files)
