"""Preparing a benchmark: the inference window, the model copy, the pool scored once by the pretrained
model, the source-only floor, and the meter that counts scoring passes (see runner.py for the design)."""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...errors import ASFDAError
from ...evaluation import evaluate_model
from ...io.preprocessing import preprocess_case
from ...io.volumes import read_volume
from ...loop import RoundRecord
from ...loop_records import compact
from ...models.loading import WEIGHTS_FILE, load_model, resolve_device
from ...models.spec import SPEC_FILE, ModelSpec
from ...session import session as session_module
from ...session.session import AdaptationSession
from ...session.store import PRETRAINED_VERSION, SessionStore, write_json_atomic
from ..datasets.layout import DatasetLayout
from .results import SOURCE_ONLY, RoundCost, RunResult


class Window(str, Enum):
    """The sliding-window size used for inference in the benchmark."""

    VOLUME = "volume"  # one window over the whole (largest) volume: same function, far fewer voxels
    MODEL = "model"  # the model's own roi_size and overlap


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
    progress: bool = True,
) -> dict:
    """Score the pool with the pretrained model once, for every run's first round: our scores (one pass
    with BatchNorm statistics) and, when an arm needs it, MC-dropout epistemic (5 more passes), timed per
    volume (with a progress bar unless ``progress`` is off)."""
    if out.is_file() and (session_dir / "session.json").is_file():
        timing = json.loads(out.read_text())
        if "pool_embeddings" not in timing:  # a benchmark scored before they were recorded: from the cache
            timing["pool_embeddings"] = pool_embeddings(SessionStore(session_dir))
            write_json_atomic(out, timing)
        return timing
    if session_dir.exists():
        shutil.rmtree(session_dir)
    session = AdaptationSession.create(session_dir, model, device)
    cases = session.add_folder(pool_images)
    timing = {"ours": {"seconds": [], "passes": 0}, "epistemic": {"seconds": [], "passes": 0}}
    meter = ScoringMeter()
    with meter.installed():
        bar = tqdm(cases, desc="scoring the pool by the pretrained model", leave=False, disable=not progress)
        for record in bar:
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
    timing["pool_embeddings"] = pool_embeddings(session.store)
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
        per_case_dice={c.name: c.mean_dice for c in evaluation.cases},  # the site endpoint's floor
        per_case_hd95={c.name: c.mean_hd95 for c in evaluation.cases},
        per_class_hd95=evaluation.per_class_hd95(),
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


def pool_embeddings(store: SessionStore) -> dict[str, list[float]]:
    """Each pool case's class-prototype embedding under the pretrained model, from the scores cache: the
    space every arm's first query ranks in (site_figures.py projects it), 5 significant digits."""
    embeddings = {}
    for record in store.cases():
        path = store.scores_path(PRETRAINED_VERSION, record.id)
        if path.is_file():
            embeddings[record.name] = [compact(v) for v in json.loads(path.read_text())["embedding"]]
    return embeddings


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
