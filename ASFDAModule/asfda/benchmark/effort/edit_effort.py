"""The edit-effort benchmark (``asfda proposals-bench``): how good is the segmentation a radiologist starts
correcting from, against the reference, after 0, 1, 2, 3 labelled cases?

Per seed, the labelled cases are a seeded random draw from the pool (nested: the first k are the k labelled;
not the query's picks, which would need the pool scored each seed), and the query cases are one fixed split
(the test split by default: every seed scores the same cases, so the comparisons pair by seed and case, and a
site dataset's test split holds every sub-population, fsaverage included). At k labelled, the model is the
source model fine-tuned by the shipped recipe (``FinetuneConfig()``, seeded by the seed) on those k cases in
one round from the source model (the product trains one round a save, each from the last; one round is the
cheaper stand-in), the source model itself at 0. Each query gets the model's prediction, every proposal of
``asfda.proposals`` from the k labelled cases, and the served one: what ``choose_proposal`` picks by its
leave-one-out over the k labelled cases, each predicted as the product predicts it (``corrected_from``):
case i by the model at budget i, the one before case i was labelled, which never trained on it (the model at
k did, and its fit would flatter it).

Each seed's records go to ``runs/seed<N>.json`` when the seed ends, so an interrupted benchmark (Ctrl-C) keeps
the finished seeds and a rerun with the same settings resumes after them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...config import FinetuneConfig
from ...errors import ASFDAError
from ...finetune.trainer import finetune_round
from ...inference.predictor import predict
from ...io.preprocessing import ModelSpaceCase, preprocess_case
from ...io.volumes import case_name, read_volume
from ...models.loading import LoadedModel, load_model
from ...proposals import CANDIDATES, Case, ProposalKind, RegistrationSettings, choose_proposal, propagate_all
from ...proposals.selection import foreground_dice, proposal_from_warped
from ...session.starting_points import ProposalConfig
from ...session.store import write_json_atomic
from ..datasets.layout import DATASET_FILE
from ..datasets.subpopulations import SITE_SUBPOPULATIONS, Anatomy
from .edit_effort_summary import (
    CORRECTED_FROM,
    FITTED,
    MODEL,
    SERVED,
    TARGET,
    EffortRecord,
    Target,
    results_markdown,
    summarize,
)

FORMAT_VERSION = 2  # 2: the leave-one-out predicts case i by the model at budget i (1: by the model at k)
# The proposal kinds measured: a new kind (e.g. a refinement) joins CANDIDATES, measured and served with them.
PROPOSAL_KINDS = tuple(kind.value for kind in CANDIDATES)
_ANATOMY = {s.name: s.anatomy.value for s in SITE_SUBPOPULATIONS}


@dataclass(frozen=True)
class EffortConfig:
    seeds: tuple[int, ...] = tuple(range(8))
    budgets: tuple[int, ...] = (0, 1, 2, 3)
    query_split: str = "test"
    max_queries: int | None = None  # the first N cases of the query split (bounds the cost)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    single_case: ProposalKind = ProposalConfig.single_case  # what the product serves from one labelled case
    threads: int | None = 1
    device: str = "cpu"

    def signature(self, dataset: Path, model: Path) -> dict:
        """What a finished seed's records depend on: a run saved with another is measured again."""
        return {
            "format": FORMAT_VERSION,
            "dataset": str(dataset.resolve()),
            "model": str(model.resolve()),
            "budgets": list(self.budgets),
            "query_split": self.query_split,
            "max_queries": self.max_queries,
            "finetune": json.loads(json.dumps(dataclasses.asdict(self.finetune), default=str)),
            "registration": json.loads(json.dumps(dataclasses.asdict(self.registration), default=str)),
            "single_case": self.single_case.value,
        }


@dataclass(frozen=True, eq=False)
class BenchCase:
    """A labelled dataset case in the model's space: for fine-tuning and for proposals."""

    name: str
    anatomy: str
    model_space: ModelSpaceCase

    @property
    def case(self) -> Case:
        image = self.model_space.image
        labels = np.rint(self.model_space.label[0].numpy()).astype(np.int64)
        spacing = tuple(float(s) for s in image.pixdim[:3])
        return Case(image[0].numpy(), spacing, labels, self.name)


def anatomy_of(entry: dict) -> str:
    """A dataset case's anatomy: its site sub-population's, else ICBM152 (every other builder's template)."""
    return _ANATOMY.get(entry.get("subpopulation", ""), Anatomy.ICBM152.value)


def load_split(dataset: Path, split: str, model: LoadedModel) -> list[BenchCase]:
    manifest_path = dataset / DATASET_FILE
    if not manifest_path.is_file():
        raise ASFDAError(
            "not a benchmark dataset (no dataset.json; build one with asfda make-dataset)", dataset
        )
    entries = json.loads(manifest_path.read_text())["cases"].get(split, [])
    return [
        BenchCase(
            entry.get("name") or case_name(Path(entry["image"])),
            anatomy_of(entry),
            preprocess_case(
                read_volume(dataset / entry["image"]), model.spec, read_volume(dataset / entry["label"])
            ),
        )
        for entry in entries
    ]


def draw_labelled(pool: list[BenchCase], seed: int, count: int) -> list[BenchCase]:
    """The seed's labelled cases in labelling order (the first k are labelled at budget k)."""
    if count > len(pool):
        raise ASFDAError(f"{count} labelled cases asked for but the pool has {len(pool)}")
    order = np.random.default_rng([seed, 23]).permutation(len(pool))[:count]
    return [pool[i] for i in order]


def probabilities(model: LoadedModel, case: BenchCase, device: str) -> np.ndarray:
    return predict(model, case.model_space.image.as_tensor(), device).probabilities.numpy()


def budget_model(source: Path, labelled: list[BenchCase], config: EffortConfig, seed: int) -> LoadedModel:
    """The source model, fine-tuned by the recipe on the labelled cases in one round (none: as it is)."""
    model = load_model(source)
    if labelled:
        finetune = dataclasses.replace(config.finetune, seed=seed)
        result = finetune_round(model, [c.model_space for c in labelled], [], finetune, config.device)
        model.network.load_state_dict(result.state_dict)
    model.network.eval()
    return model


def trained_budgets(budgets: Sequence[int]) -> list[int]:
    """The budgets whose model is trained: those measured and every one below them, whose model predicts the
    case labelled next for the leave-one-out."""
    return sorted(set(budgets) | set(range(max(budgets))))


def budget_models(
    source: Path, labelled: list[BenchCase], config: EffortConfig, seed: int
) -> Iterator[tuple[int, LoadedModel, list[np.ndarray]]]:
    """Each measured budget k with its model and the leave-one-out's predictions of the first k labelled
    cases: case i's by the model at budget i (the source model for the first), the prediction a radiologist
    labelling in this order corrected."""
    corrected: list[np.ndarray] = []
    for budget in trained_budgets(config.budgets):
        model = budget_model(source, labelled[:budget], config, seed)
        if budget < len(labelled):
            corrected.append(probabilities(model, labelled[budget], config.device))
        if budget in config.budgets:
            yield budget, model, corrected[:budget]


def measure_budget(
    model: LoadedModel,
    labelled: list[BenchCase],
    corrected: list[np.ndarray],
    queries: list[BenchCase],
    warped_by_query: list[list],
    num_classes: int,
    config: EffortConfig,
    seed: int,
) -> tuple[list[EffortRecord], dict]:
    """The records of one budget: every query's model, proposal and served Dice (``corrected``: the
    leave-one-out's predictions of the labelled cases, from ``budget_models``)."""
    choice = choose_proposal(
        [c.case for c in labelled],
        corrected,
        num_classes,
        settings=config.registration,
        single_case=config.single_case,
    )
    names = {c.name for c in labelled}
    records = []
    for query, warped in zip(queries, warped_by_query):
        target = query.case
        prediction = probabilities(model, query, config.device)
        dice = {MODEL: foreground_dice(prediction.argmax(0), target.labels, num_classes)}
        chosen = [w for w in warped if w.case_id in names]
        for kind in PROPOSAL_KINDS:  # nothing labelled: no proposal
            dice[kind] = (
                foreground_dice(
                    proposal_from_warped(ProposalKind(kind), target, chosen, prediction, num_classes).labels,
                    target.labels,
                    num_classes,
                )
                if chosen
                else np.nan
            )
        dice[SERVED] = dice[choice.served.value]
        records.append(
            EffortRecord(
                seed,
                len(labelled),
                query.name,
                query.anatomy,
                tuple(c.anatomy for c in labelled),
                choice.served.value,
                {k: float(v) for k, v in dice.items()},
            )
        )
    return records, {
        "served": choice.served.value,
        "summary": choice.summary(),
        "seconds": choice.seconds,
        "model_budgets": {c.name: i for i, c in enumerate(labelled)},  # the model each case was predicted by
    }


def run_seed(
    seed: int,
    source: Path,
    pool: list[BenchCase],
    queries: list[BenchCase],
    num_classes: int,
    config: EffortConfig,
    bar: tqdm,
) -> dict:
    """One seed: the draw, a model per budget, the registrations (each query against every labelled case
    once, shared by the budgets), the records."""
    started = time.perf_counter()
    labelled = draw_labelled(pool, seed, max(config.budgets))
    warped_by_query = (
        [propagate_all(q.case, [c.case for c in labelled], num_classes, config.registration) for q in queries]
        if labelled
        else [[] for _ in queries]
    )
    records, choices = [], {}
    for budget, model, corrected in budget_models(source, labelled, config, seed):
        bar.set_postfix_str(f"seed {seed}, {budget} labelled")
        budget_records, choices[str(budget)] = measure_budget(
            model, labelled[:budget], corrected, queries, warped_by_query, num_classes, config, seed
        )
        records += budget_records
        bar.update(1)
    return {
        "seed": seed,
        "labelled": [c.name for c in labelled],
        "queries": [q.name for q in queries],
        "leave_one_out": CORRECTED_FROM,
        "choices": choices,
        "records": [r.to_json() for r in records],
        "seconds": time.perf_counter() - started,
    }


def finished_run(path: Path, signature: dict) -> dict | None:
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    return run if run.get("signature") == signature else None


def run_edit_effort(
    dataset: Path,
    model: Path,
    out: Path,
    config: EffortConfig = EffortConfig(),
    target: Target = TARGET,
    progress: bool = True,
) -> dict:
    """Every seed not already finished, then ``summary.json`` and ``results.md`` over the finished ones."""
    if config.threads:
        torch.set_num_threads(config.threads)
    source = load_model(model)
    num_classes = len(source.spec.labels)
    pool = load_split(dataset, "pool", source)
    queries = load_split(dataset, config.query_split, source)[: config.max_queries]
    if not queries:
        raise ASFDAError(f"no case in the split {config.query_split!r} to query", dataset)
    signature = config.signature(dataset, model)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    finished = {s: finished_run(runs / f"seed{s}.json", signature) for s in config.seeds}
    todo = [s for s, run in finished.items() if run is None]
    with tqdm(total=len(todo) * len(config.budgets), desc="edit effort", disable=not progress) as bar:
        try:
            for seed in todo:
                run = run_seed(seed, model, pool, queries, num_classes, config, bar)
                finished[seed] = {**run, "signature": signature}
                write_json_atomic(runs / f"seed{seed}.json", finished[seed])
                tqdm.write(f"seed {seed}: {run['seconds']:.0f} s, served " + _served(run))
        except KeyboardInterrupt:
            tqdm.write(f"cancelled: {sum(r is not None for r in finished.values())} seeds finished")
    return write_summary(out, [r for r in finished.values() if r is not None], target)


def write_summary(out: Path, runs: list[dict], target: Target = TARGET) -> dict:
    records = [EffortRecord.from_json(r) for run in runs for r in run["records"]]
    if not records:
        raise ASFDAError("no finished seed to summarise", out)
    summary = summarize(records, PROPOSAL_KINDS, target)
    summary["leave_one_out"] = sorted({run.get("leave_one_out", FITTED) for run in runs})  # format 1: fitted
    write_json_atomic(out / "summary.json", summary)
    (out / "results.md").write_text(results_markdown(summary, PROPOSAL_KINDS))
    return summary


def _served(run: dict) -> str:
    return ", ".join(f"{k}: {c['served']}" for k, c in run["choices"].items())
