"""The benchmark runs: every query strategy adapts the source model to the target pool at the same
annotation schedule, the reference masks playing the annotator, for several seeds, with the costs metered in
the same run.

A *run* is one (strategy, seed): a fresh session, round 0 = the source model, then one round per entry of
the schedule (query, label from the reference masks, fine-tune from the last weights, evaluate on the
held-out test cases). Its result is saved as ``OUT/runs/<strategy>-seed<k>.json`` when it finishes; a rerun
skips the runs already saved, so an interrupted benchmark resumes where it stopped.

Choices that make the comparison fair and the run affordable (each one a field of :class:`BenchmarkConfig`):

- Every strategy gets the same schedule, the same fine-tuning steps per round and the same fine-tuning seed
  (seed k of one strategy is paired with seed k of every other). Only the full method ("asfda") fine-tunes
  semi-supervised; every other strategy, "asfda-no-ssl" included, fine-tunes on its labelled cases only.
  So "asfda-no-ssl" against the baselines measures the query, and "asfda" against "asfda-no-ssl" measures
  the selective semi-supervised part.
- The all-labelled ceiling labels the whole pool at once and trains for the total steps a strategy gets
  over its whole schedule (steps x rounds), supervised: the same training compute, every label.
- The pool is scored once by the pretrained model (ours and MC dropout, timed separately) and every run's
  round 1 starts from those cached scores: they are the same numbers in every run, computed once.
- Inference uses one window over the whole volume (``window="volume"``, the model's window grown to cover
  the largest volume) instead of the model's overlapping 48^3 windows: for a fully convolutional network in
  eval mode it is the same per-voxel function up to border effects, and it is several times cheaper on a
  CPU. Fine-tuning patches keep the model's own window size unless ``patch_size`` says otherwise.

Layout::

    OUT/runs/<strategy>-seed<k>.json   a finished run (records and costs): the resume key
    OUT/pretrained_scoring.json        the one-off scoring of the pool by the pretrained model
    OUT/results.md, results.csv, records.csv, costs.md, curves.png, run.json    (see report.py)
    WORK/model/                        the source model with the benchmark's inference window
    WORK/shared/                       the session that scored the pool with the pretrained model
    WORK/<strategy>-seed<k>/           a run's session (deleted when the run is saved, unless kept)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import queue as queues
import resource
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..config import FinetuneConfig, config_to_dict
from ..errors import ASFDAError
from ..evaluation import evaluate_model
from ..io.preprocessing import preprocess_case
from ..io.volumes import read_volume
from ..loop import LoopSettings, RoundRecord, run_loop
from ..models.loading import WEIGHTS_FILE, load_model, resolve_device
from ..models.spec import SPEC_FILE, ModelSpec
from ..session import session as session_module
from ..session.session import AdaptationSession
from ..session.store import PRETRAINED_VERSION, SessionStore, write_json_atomic
from . import report
from .arms import ARMS, CANDIDATES, CEILING, FULL_METHOD, KNOWN_ARMS, QUERY_ARMS, Arm, full_method
from .dataset import DatasetLayout
from .folder import as_benchmark_dataset, open_dataset
from .report import ALL_LABELLED, SOURCE_ONLY, RoundCost, RunResult
from .statistics import write_statistics

__all__ = ["ARMS", "CEILING", "KNOWN_ARMS", "Arm"]  # re-exported: the arms live in arms.py


class Window(str, Enum):
    """The sliding-window size used for inference in the benchmark."""

    VOLUME = "volume"  # one window over the whole (largest) volume: same function, far fewer voxels
    MODEL = "model"  # the model's own roi_size and overlap


@dataclass
class BenchmarkConfig:
    arms: tuple[str, ...] = tuple(ARMS)
    seeds: tuple[int, ...] = (0, 1, 2)
    schedule: tuple[int, ...] = (1, 2, 4, 8)
    steps: int = 30  # fine-tuning steps per round
    patch_size: int | None = None  # None: the model's own window size
    batch_size: int = 2
    validate_every: int | None = None  # None: once, at the end of each round
    window: Window = Window.VOLUME
    all_labelled: bool = True
    all_labelled_steps: int | None = None  # None: steps x rounds, the compute of a whole schedule
    device: str = "auto"
    threads: int | None = None  # torch threads per run (None: torch's default)
    workers: int = 1  # runs at a time
    isolate: bool = True  # each run in its own process (exact peak memory per run; needed for workers > 1)
    keep_sessions: bool = False
    # Budgets as percentages of the pool (replace ``schedule`` when given); the endpoint is stated before
    # the run: Dice at ``endpoint_percent`` labelled.
    budgets: tuple[float, ...] | None = None
    endpoint_percent: float = 10.0
    steps_per_labelled: int = 0  # fine-tuning steps added per labelled case
    augment: bool = False  # weak intensity augmentation of labelled patches (every arm)
    recompute_batchnorm: bool = False  # BatchNorm statistics from whole labelled volumes after each round
    asfda_query: str = "default"  # "default": DEFAULT_QUERY; "auto": best candidate on validation; or a name
    random_seeds: tuple[int, ...] = ()  # extra draws for random (cheap: it needs no scores)

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in KNOWN_ARMS]
        if unknown:
            raise ASFDAError(f"unknown strategies {unknown}; known: {', '.join(KNOWN_ARMS)}")
        if list(self.schedule) != sorted(set(self.schedule)) or not self.schedule or self.schedule[0] < 1:
            raise ASFDAError(f"the schedule must be increasing labelled counts >= 1, got {self.schedule}")
        self.window = Window(self.window)
        if self.asfda_query not in ("default", "auto", *QUERY_ARMS):
            raise ASFDAError(f"--asfda-query must be default, auto or one of {', '.join(QUERY_ARMS)}")

    def resolved_schedule(self, n_pool: int) -> tuple[int, ...]:
        """Labelled counts after each round: the budgets as fractions of the pool, or the schedule."""
        if not self.budgets:
            return tuple(self.schedule)
        counts = sorted({max(1, round(b / 100 * n_pool)) for b in self.budgets})
        return tuple(c for c in counts if c <= n_pool)

    def endpoint(self, n_pool: int) -> int:
        """The pre-stated endpoint's labelled count (10 % of the pool by default)."""
        if not self.budgets:
            return self.schedule[min(len(self.schedule) - 1, len(self.schedule) // 2)]
        return max(1, round(self.endpoint_percent / 100 * n_pool))

    def finetune(
        self, semi_supervised: bool, seed: int, patch: tuple[int, int, int], steps: int
    ) -> FinetuneConfig:
        return FinetuneConfig(
            steps=steps,
            patch_size=patch,
            batch_size=self.batch_size,
            semi_supervised=semi_supervised,
            validate_every=self.validate_every or steps,
            seed=seed,
            augment=self.augment,
            recompute_batchnorm=self.recompute_batchnorm,
        )


@dataclass
class Job:
    """Everything a run needs, picklable for a worker process."""

    arm: Arm
    seed: int
    schedule: tuple[int, ...]
    finetune: FinetuneConfig
    model: Path
    dataset: Path
    session: Path
    shared: Path
    result: Path
    log: Path
    device: str
    threads: int | None
    keep_session: bool
    steps_per_labelled: int = 0
    keep_model: Path | None = None  # where to copy the final weights (for the before/after figure)

    @property
    def name(self) -> str:
        return f"{self.arm.name}-seed{self.seed}"


@dataclass
class BenchmarkOutcome:
    results: list[RunResult]
    failures: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


# -- metering ---------------------------------------------------------------------------------------------
class ScoringMeter:
    """Counts the sliding-window passes and the volumes the session scores, round by round.

    Within a session, ``predict`` is called only to score cases (evaluation and fine-tuning validation predict
    through other modules), and ``score_case`` once per volume scored (a cache hit calls neither). The meter
    wraps those two names of the session module for the duration of a run.
    """

    def __init__(self):
        self.passes = 0
        self.volumes = 0
        self.rounds: list[RoundCost] = []
        self._marks = (0, 0)

    @contextmanager
    def installed(self) -> Iterator[ScoringMeter]:
        predict, score_case = session_module.predict, session_module.score_case

        def counted_predict(*args, **kwargs):
            self.passes += 1
            return predict(*args, **kwargs)

        def counted_score_case(*args, **kwargs):
            self.volumes += 1
            return score_case(*args, **kwargs)

        session_module.predict, session_module.score_case = counted_predict, counted_score_case
        try:
            yield self
        finally:
            session_module.predict, session_module.score_case = predict, score_case

    def end_round(self, record: RoundRecord) -> RoundCost:
        cost = RoundCost(record.round, self.volumes - self._marks[1], self.passes - self._marks[0])
        self._marks = (self.passes, self.volumes)
        self.rounds.append(cost)
        return cost


def peak_rss_mib() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


# -- preparation ------------------------------------------------------------------------------------------
def split_folders(layout: DatasetLayout, split: str) -> tuple[Path, Path]:
    """The images and labels folders of a split (the loop takes folders)."""
    pairs = layout.split(split)
    if not pairs:
        raise ASFDAError(f"the dataset has no {split} cases", layout.root)
    return pairs[0][0].parent, pairs[0][1].parent


def volume_window(spec: ModelSpec, images: Sequence[Path], multiple: int = 16) -> tuple[int, int, int]:
    """The smallest window, a multiple of ``multiple`` per side (the network's downsampling), that covers
    every volume in the model's space."""
    sizes = [preprocess_case(read_volume(path), spec).image.shape[1:] for path in images]
    return tuple(int(-(-max(size[axis] for size in sizes) // multiple) * multiple) for axis in range(3))


def prepare_model(
    model: Path, folder: Path, window: Window, images: Sequence[Path]
) -> tuple[Path, tuple[int, ...]]:
    """The model to adapt (a copy with a whole-volume window, or the model itself) and its own window size."""
    model = Path(model).resolve()
    spec_path = model / SPEC_FILE
    if not spec_path.is_file():
        if window is Window.VOLUME:
            raise ASFDAError(
                "a whole-volume window needs a model folder with asfda_model.json: use --window model", model
            )
        return model, tuple(load_model(model).spec.roi_size)
    spec = ModelSpec.load(spec_path)
    own = tuple(spec.roi_size)
    if window is Window.MODEL:
        return model, own
    spec.roi_size = volume_window(spec, images)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    spec.save(folder)
    return folder, own


def score_pool_once(
    model: Path,
    pool_images: Path,
    session_dir: Path,
    device: str,
    out: Path,
    report_line: Callable[[str], None] = print,
    epistemic: bool = True,
) -> dict:
    """Score the pool with the pretrained model once, for every run's first round: our scores (one pass
    with BatchNorm statistics) and, when an arm needs it, MC-dropout epistemic (5 more passes), timed per
    volume."""
    if out.is_file() and (session_dir / "session.json").is_file():
        return json.loads(out.read_text())
    if session_dir.exists():
        shutil.rmtree(session_dir)
    session = AdaptationSession.create(session_dir, model, device)
    cases = session.add_folder(pool_images)
    timing = {"ours": {"seconds": [], "passes": 0}, "epistemic": {"seconds": [], "passes": 0}}
    meter = ScoringMeter()
    with meter.installed():
        for record in tqdm(cases, desc="scoring the pool with the pretrained model", leave=False):
            for kind, with_dropout in (("ours", False), ("epistemic", True))[: 2 if epistemic else 1]:
                passes = meter.passes
                started = time.perf_counter()
                session.case_scores(record.id, epistemic=with_dropout)
                timing[kind]["seconds"].append(time.perf_counter() - started)
                timing[kind]["passes"] += meter.passes - passes
    if not epistemic:
        timing.pop("epistemic")
    for kind in timing.values():
        kind["passes_per_volume"] = kind.pop("passes") / max(len(cases), 1)
    timing["note"] = (
        "per volume, pretrained model; the epistemic line recomputes the plain pass too (its "
        "scores need the embedding and ASD as well), so MC dropout alone costs the difference"
    )
    write_json_atomic(out, timing)
    report_line(
        f"pool scored by the pretrained model: {len(cases)} volumes, ours "
        f"{sum(timing['ours']['seconds']) / max(len(cases), 1):.2f} s / volume"
        + (
            f", MC dropout {sum(timing['epistemic']['seconds']) / max(len(cases), 1):.2f} s / volume"
            if epistemic
            else ""
        )
    )
    return timing


def evaluate_source(model: Path, layout: DatasetLayout, device: str, out: Path) -> RunResult:
    """The floor: the source model on the held-out cases, once (it is every run's round 0)."""
    if out.is_file():
        return RunResult.from_json(json.loads(out.read_text()))
    started, clock = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    evaluation = evaluate_model(load_model(model), list(layout.test), resolve_device(device))
    record = RoundRecord(
        0,
        0,
        [],
        PRETRAINED_VERSION,
        evaluation.mean_dice,
        evaluation.mean_hd95,
        None,
        0.0,
        0.0,
        evaluation.per_class_dice(),
    )
    result = RunResult(
        SOURCE_ONLY,
        0,
        "none",
        [record],
        [],
        peak_rss_mib(),
        None,
        time.perf_counter() - clock,
        started,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json_atomic(out, result.to_json())
    return result


def warm_scores(shared: Path, store: SessionStore) -> int:
    """Copy the pretrained model's scores and knowledge gaps of every case into a new session's cache (case
    ids are content hashes, so they are the same in every session of the same pool)."""
    shared_store = SessionStore(shared)
    copied = 0
    for record in store.cases():
        for source, target in (
            (
                shared_store.scores_path(PRETRAINED_VERSION, record.id),
                store.scores_path(PRETRAINED_VERSION, record.id),
            ),
            (shared_store.gap_path(record.id), store.gap_path(record.id)),
        ):
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied += 1
    return copied


# -- one run ----------------------------------------------------------------------------------------------
def run_job(job: Job, messages) -> dict:
    """Run one (strategy, seed) and save its result; ``messages.put(text)`` reports each round."""
    set_threads(job.threads)
    cuda = job.device.startswith("cuda") or (job.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started, clock = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    if job.session.exists():  # an unfinished run: start it again from scratch
        shutil.rmtree(job.session)
    layout = open_dataset(job.dataset)
    pool_images, pool_labels = split_folders(layout, "pool")
    test_images, test_labels = split_folders(layout, "test")
    val_images, val_labels = split_folders(layout, "val") if layout.val else (None, None)
    session = AdaptationSession.create(job.session, job.model, job.device, finetune=job.finetune)
    session.add_folder(pool_images)
    warm_scores(job.shared, session.store)
    settings = LoopSettings(
        schedule=job.schedule,
        strategy=job.arm.strategy,
        semi_supervised=job.arm.semi_supervised,
        seed=job.seed,
        finetune=job.finetune,
        evaluate_start=False,  # the source model is evaluated once for all runs (source-only.json)
        steps_per_labelled=job.steps_per_labelled,
    )
    meter = ScoringMeter()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with job.log.open("w") as log, meter.installed(), warnings.catch_warnings():
        # Library warnings go to the run's log, not across the progress bar of the whole benchmark.
        warnings.showwarning = lambda message, category, filename, lineno, *_: log.write(
            f"{category.__name__}: {message} ({filename}:{lineno})\n"
        )

        def on_round(record: RoundRecord) -> None:
            cost = meter.end_round(record)
            dice = "n/a" if record.test_dice is None else f"{record.test_dice:.4f}"
            messages.put(
                f"{job.name} round {record.round} ({record.n_labelled} labelled): Dice {dice}, "
                f"{cost.passes} scoring passes"
            )

        def write(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        records = run_loop(
            job.session,
            job.model,
            pool_images,
            pool_labels,
            settings,
            job.device,
            test_images,
            test_labels,
            report=write,
            on_round=on_round,
            validation_images=val_images,
            validation_references=val_labels,
        )
        if job.keep_model is not None:
            job.keep_model.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(
                session.store.weights_path(session.store.active_version), job.keep_model / WEIGHTS_FILE
            )
            shutil.copyfile(job.model / SPEC_FILE, job.keep_model / SPEC_FILE)
    result = RunResult(
        job.arm.name,
        job.seed,
        job.arm.fine_tuning,
        records,
        meter.rounds,
        peak_rss_mib(),
        torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        time.perf_counter() - clock,
        started,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json_atomic(job.result, result.to_json())
    if not job.keep_session:
        shutil.rmtree(job.session, ignore_errors=True)
    return result.to_json()


class _Relay:
    """In-process stand-in for the workers' message queue."""

    def __init__(self, receive: Callable[[str], None]):
        self.receive = receive

    def put(self, message: str) -> None:
        self.receive(message)


def execute(jobs: list[Job], workers: int, isolate: bool, bar: tqdm) -> dict[str, str]:
    """Run the jobs (in worker processes when isolated); return the failures by run name."""
    failures: dict[str, str] = {}

    def receive(message: str) -> None:
        bar.update(1)
        bar.set_postfix_str(message[:90])
        tqdm.write(message)

    if not isolate:
        for job in jobs:
            try:
                run_job(job, _Relay(receive))
            except Exception as error:  # one failed run must not lose the others
                failures[job.name] = f"{error!r}\n{traceback.format_exc()}"
        return failures

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch state
    with context.Manager() as manager, context.Pool(max(workers, 1), maxtasksperchild=1) as pool:
        messages = manager.Queue()
        pending = {job.name: pool.apply_async(run_job, (job, messages)) for job in jobs}
        while pending:
            try:
                receive(messages.get(timeout=1.0))
            except queues.Empty:
                pass
            for name in [n for n, r in pending.items() if r.ready()]:
                outcome = pending.pop(name)
                try:
                    outcome.get()
                except Exception as error:
                    failures[name] = repr(error)
                    tqdm.write(f"{name} failed: {error!r}")
        while True:  # the last rounds' messages
            try:
                receive(messages.get_nowait())
            except queues.Empty:
                break
    return failures


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
        if arm is CEILING:
            schedule = (len(layout.pool),)
            steps = config.all_labelled_steps or config.steps * len(schedule_all)
        else:
            schedule, steps = schedule_all, config.steps
        name = f"{arm.name}-seed{seed}"
        finetune = replace(
            config.finetune(arm.semi_supervised, seed, patch, steps), **dict(arm.finetune_overrides)
        )
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
                0 if arm is CEILING else config.steps_per_labelled,
                out / "models" / name if arm.name == FULL_METHOD and seed == config.seeds[0] else None,
            )
        )
    return jobs


def load_results(out: Path) -> list[RunResult]:
    return [
        RunResult.from_json(json.loads(p.read_text())) for p in sorted((Path(out) / "runs").glob("*.json"))
    ]


def git_commit(path: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(device: str) -> dict:
    import monai

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "asfda": __version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def ordered(results: list[RunResult], config: BenchmarkConfig) -> list[RunResult]:
    order = {name: i for i, name in enumerate([SOURCE_ONLY, *config.arms, ALL_LABELLED])}
    seeds = {*config.seeds, *config.random_seeds}
    return sorted(
        (r for r in results if r.arm in order and (r.seed in seeds or r.arm == SOURCE_ONLY)),
        key=lambda r: (order[r.arm], r.seed),
    )


def invocations(previous_run_json: Path, run_info: dict, report_only: bool) -> list[dict]:
    """Every invocation that added runs to this benchmark (a resumed or extended one has several)."""
    keys = ("command", "git_commit", "started", "finished", "wall_seconds_this_invocation", "failures")
    previous = json.loads(previous_run_json.read_text()) if previous_run_json.is_file() else {}
    history = previous.get("invocations") or (
        [{k: previous.get(k) for k in keys}] if previous.get("command") else []
    )
    if report_only:
        return history or [{k: run_info[k] for k in keys}]
    return [*history, {k: run_info[k] for k in keys}]


def write_report(out: Path, config: BenchmarkConfig, run_info: dict) -> list[Path]:
    """results.md, results.csv, records.csv, costs.md, curves.png and run.json from the saved runs."""
    results = ordered(load_results(out), config)
    schedule = tuple(run_info.get("schedule") or config.schedule)
    scoring_path = out / "pretrained_scoring.json"
    pretrained = json.loads(scoring_path.read_text()) if scoring_path.is_file() else None
    runs_made_by = run_info.get("invocations") or [run_info]
    commands = "`  \nthen `".join(i.get("command", "") for i in runs_made_by)
    preamble = (
        f"# ASFDA benchmark\n\nDataset `{run_info.get('dataset', '')}` "
        f"({run_info.get('dataset_summary', '')}); source model `{run_info.get('model', '')}`; schedule "
        f"{', '.join(map(str, schedule))} labelled cases, one round each, {config.steps} fine-tuning "
        f"steps a round; seeds {', '.join(map(str, config.seeds))}.\n\n"
        f"Command{'s, in order' if len(runs_made_by) > 1 else ''}: `{commands}`  \n"
        f"Machine: {run_info.get('machine_summary', '')}  \n"
        f"Commit: {run_info.get('git_commit', '')}; runs from {runs_made_by[0].get('started', '')} "
        f"to {runs_made_by[-1].get('finished', '')}."
    )
    descriptions = {name: KNOWN_ARMS[name].description for name in config.arms}
    query = (run_info.get("full_method") or {}).get("query")
    if FULL_METHOD in descriptions and query:
        descriptions[FULL_METHOD] = full_method(query).description
    descriptions[ALL_LABELLED] = (
        f"{CEILING.description}, {config.all_labelled_steps or config.steps * len(schedule)}"
        " supervised steps (the compute of a whole schedule)"
    )
    descriptions["source-only"] = "the source model, no adaptation (the floor)"
    files = [
        out / "results.md",
        out / "results.csv",
        out / "records.csv",
        out / "costs.md",
        out / "curves.png",
        out / "run.json",
    ]
    files[0].write_text(report.results_markdown(results, schedule, "asfda", descriptions, preamble))
    files[1].write_text(report.results_csv(results, schedule))
    files[2].write_text(report.records_csv(results))
    files[3].write_text(report.costs_markdown(results, pretrained, preamble))
    report.plot_curves(
        results,
        schedule,
        files[4],
        title=f"{run_info.get('dataset_summary', '')}; mean ± sd over {len(config.seeds)} seeds",
    )
    run_info = {
        **run_info,
        "runs": [
            {
                "strategy": r.arm,
                "seed": r.seed,
                "started": r.started,
                "finished": r.finished,
                "seconds": round(r.seconds, 1),
            }
            for r in results
        ],
    }
    files[5].write_text(json.dumps(run_info, indent=2, default=str))
    files += write_statistics(out, results, schedule, run_info.get("endpoint") or schedule[-1], run_info)
    return files


def config_json(config: BenchmarkConfig) -> dict:
    data = asdict(config)
    data["window"] = config.window.value
    return data


def resolve_full_method(
    config: BenchmarkConfig, out: Path, endpoint: int | None = None, final: bool = False
) -> tuple[Arm, dict]:
    """The full method's arm and how its query was chosen. With ``asfda_query="auto"`` and candidates in
    the benchmark, the query is the candidate with the best mean *validation-split* Dice at the endpoint
    (the test set is never looked at); until those runs exist, ``waits`` is True."""
    from .arms import DEFAULT_QUERY
    from .statistics import choose_by_validation

    if config.asfda_query not in ("auto", "default"):
        return full_method(config.asfda_query), {
            "query": config.asfda_query,
            "chosen_by": "--asfda-query",
            "waits": False,
        }
    candidates = [name for name in CANDIDATES if name in config.arms]
    if config.asfda_query == "default" or not candidates or FULL_METHOD not in config.arms:
        return full_method(DEFAULT_QUERY), {
            "query": DEFAULT_QUERY,
            "chosen_by": "DEFAULT_QUERY",
            "waits": False,
        }
    if not final:
        return full_method(DEFAULT_QUERY), {"query": None, "chosen_by": "validation (pending)", "waits": True}
    query, table = choose_by_validation(load_results(out), candidates, endpoint)
    chosen_by = f"best mean validation-split Dice at the endpoint: {table}"
    return full_method(query), {"query": query, "chosen_by": chosen_by, "waits": True}


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
    patch = (config.patch_size,) * 3 if config.patch_size else own_window
    endpoint = config.endpoint(len(layout.pool))
    full, selection = resolve_full_method(config, out, endpoint)
    first_wave = [name for name in config.arms if name != FULL_METHOD or selection["waits"] is False]
    jobs = plan_jobs(config, layout, model_used, patch, out, work, full, [*first_wave, ALL_LABELLED])
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
        "finetune_defaults": config_to_dict(config.finetune(True, 0, patch, config.steps)),
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
        "full_method": {"query": selection["query"], "chosen_by": selection["chosen_by"]},
        "schedule": list(config.resolved_schedule(len(layout.pool))),
        "endpoint": config.endpoint(len(layout.pool)),
        "case_metadata": layout.metadata,
        "example_test_case": [str(p) for p in layout.test[0]] if layout.test else None,
    }
    run_info["invocations"] = invocations(out / "run.json", run_info, report_only)
    files = write_report(out, config, run_info)
    return BenchmarkOutcome(ordered(load_results(out), config), failures, files)
