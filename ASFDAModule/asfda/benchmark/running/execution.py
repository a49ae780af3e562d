"""Running the benchmark's jobs: one (strategy, seed) run in a fresh session, in worker processes."""

from __future__ import annotations

import multiprocessing
import queue as queues
import shutil
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...config import FinetuneConfig
from ...loop import LoopSettings, RoundRecord, run_loop
from ...models.loading import WEIGHTS_FILE
from ...models.spec import SPEC_FILE
from ...session.session import AdaptationSession
from ...session.store import write_json_atomic
from ..datasets.folder import open_dataset
from .arms import Arm
from .preparation import ScoringMeter, peak_rss_mib, set_threads, split_folders, warm_scores
from .results import RunResult


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
    fixed_labelled: tuple[str, ...] = ()  # the first round labels these cases instead of querying

    @property
    def name(self) -> str:
        return f"{self.arm.name}-seed{self.seed}"


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
        fixed_labelled=job.fixed_labelled,
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
