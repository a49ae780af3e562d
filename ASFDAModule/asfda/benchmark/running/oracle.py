"""The oracle: a labelled set found by greedy forward search on the *validation* split (``asfda oracle``).

The headroom's top reference for a choice of cases (headroom.py): at each step, ``candidates`` unlabelled pool
cases (a random subset, drawn from the oracle's seed; 0 = every one) are each added in turn to the set so
far, the full method's fine-tuning trains one round from the source model on that set, and the candidate
whose model scores the best mean Dice on the validation split is kept. The test split is never read during
the search. The sets it reached at the schedule's budgets are then trained the same way once more and
scored on test, the result saved as ``OUT/oracle/oracle-seed<k>.json`` (a :class:`RunResult` beside the
arms' ``OUT/runs``), the search itself as ``oracle-seed<k>-search.json`` (resumed step by step).

Cost: one fine-tune and one validation pass per candidate tried, ``sum over steps of min(candidates,
unlabelled)``: 6 steps x 8 candidates = 48 fine-tunes for the site pool's endpoint (6 of 60), plus one
fine-tune and test pass per budget of the schedule. The shipped recipe's round on a GPU is about a minute,
so about an hour per seed; on 2 CPU cores a day. Greedy is not the best set of its size (that search is
combinatorial) and the validation Dice of one fine-tune carries training noise (training_noise.py), so
the oracle is a reachable reference, not an upper bound; the all-labelled ceiling is the other.
The oracle's training is one round from the source model on its set (as the training-noise runs), where
an arm trains round after round over its schedule: the oracle measures the set, not an order of picks.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import ASFDAError
from ...session.store import write_json_atomic
from .results import RunResult

FOLDER = "oracle"
ORACLE_ARM = "oracle"
DEFAULT_CANDIDATES = 8


@dataclass
class OracleStep:
    """One greedy step: the case kept, its validation Dice and every candidate tried with its Dice."""

    picked: str
    validation_dice: float
    tried: dict[str, float] = field(default_factory=dict)


def greedy_oracle(
    pool: Sequence[str],
    size: int,
    evaluate: Callable[[tuple[str, ...]], float],
    candidates: int = DEFAULT_CANDIDATES,
    seed: int = 0,
    done: Sequence[OracleStep] = (),
    on_step: Callable[[list[OracleStep]], None] | None = None,
) -> list[OracleStep]:
    """Grow a labelled set to ``size`` cases, each step keeping the candidate whose set ``evaluate`` scores
    best (ties: the first by name). ``done``: steps of an earlier, interrupted search to go on from (the
    candidate draws follow the same seeded stream, so a resumed search tries what an unbroken one would)."""
    if not 1 <= size <= len(pool):
        raise ASFDAError(f"the oracle's set size must be 1 to {len(pool)} (the pool), got {size}")
    rng = np.random.default_rng(seed)
    steps = list(done)
    for number in range(size):
        remaining = sorted(set(pool) - {s.picked for s in steps[:number]})
        if candidates <= 0 or candidates >= len(remaining):
            tried = remaining
        else:
            tried = sorted(str(c) for c in rng.choice(remaining, candidates, replace=False))
        if number < len(steps):
            continue  # already searched: the draw above keeps the stream where an unbroken search has it
        labelled = tuple(s.picked for s in steps)
        scores = {case: float(evaluate((*labelled, case))) for case in tried}
        best = max(tried, key=lambda case: (scores[case], -tried.index(case)))
        steps.append(OracleStep(best, scores[best], scores))
        if on_step is not None:
            on_step(steps)
    return steps


def search_cost(n_pool: int, size: int, candidates: int = DEFAULT_CANDIDATES) -> int:
    """Fine-tunes the search trains: ``min(candidates, unlabelled)`` per step (0 candidates: all)."""
    return sum(n_pool - k if candidates <= 0 else min(candidates, n_pool - k) for k in range(size))


def load_oracle_runs(out: Path) -> list[RunResult]:
    """The saved oracle runs of a benchmark folder (none when ``asfda oracle`` has not run)."""
    return [
        RunResult.from_json(json.loads(p.read_text()))
        for p in sorted((Path(out) / FOLDER).glob(f"{ORACLE_ARM}-seed*.json"))
        if not p.name.endswith("-search.json")
    ]


# -- training a labelled set ---------------------------------------------------------------------------------
@dataclass
class SetTrainer:
    """Trains the full method's fine-tuning one round from the source model on a given labelled set."""

    dataset: Path
    model: Path
    finetune: object  # FinetuneConfig
    work: Path
    device: str = "auto"

    def run(self, labelled: tuple[str, ...], on_test: bool):
        """The round's record: validation Dice always, test Dice only when ``on_test`` (never in search)."""
        from ...config import QueryStrategy
        from ...loop import LoopSettings, run_loop
        from ..datasets.folder import open_dataset
        from .preparation import split_folders

        layout = open_dataset(self.dataset)
        pool_images, pool_labels = split_folders(layout, "pool")
        val_images, val_labels = split_folders(layout, "val")
        test = split_folders(layout, "test") if on_test else (None, None)
        session = self.work / "oracle-set"
        shutil.rmtree(session, ignore_errors=True)
        settings = LoopSettings(
            schedule=(len(labelled),),
            strategy=QueryStrategy.RANDOM,
            seed=self.finetune.seed,
            finetune=self.finetune,
            evaluate_start=False,
            fixed_labelled=labelled,
        )
        records = run_loop(
            session, self.model, pool_images, pool_labels, settings, self.device, *test,
            report=lambda line: None, validation_images=val_images, validation_references=val_labels,
        )  # fmt: skip
        shutil.rmtree(session, ignore_errors=True)
        return records[-1]

    def validation_dice(self, labelled: tuple[str, ...]) -> float:
        record = self.run(labelled, on_test=False)
        if not record.validation_split_dice:
            raise ASFDAError(
                "the oracle searches on the validation split: this dataset has none", self.dataset
            )
        return float(np.mean(list(record.validation_split_dice.values())))


def run_oracle(args: argparse.Namespace) -> int:
    """Greedy forward search for a labelled set on the validation split, then its test Dice at each budget
    (the headroom's oracle; expensive: see ``--candidates``). Resumable: the search is saved step by step."""
    from tqdm.auto import tqdm

    from ...io.volumes import case_name
    from ..analysis.site_endpoint import endpoint_labelled
    from ..datasets.folder import as_benchmark_dataset, open_dataset
    from ..demo import committed_model
    from .arms import FULL_METHOD, KNOWN_ARMS
    from .config import BenchmarkConfig
    from .preparation import Window, prepare_model, set_threads

    out, work = Path(args.out), Path(args.work) if args.work else Path(args.out) / "work"
    layout = open_dataset(as_benchmark_dataset(args.dataset, work))
    set_threads(args.threads)
    pool = sorted(case_name(image) for image, _ in layout.pool)
    benchmark = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    size = args.size or benchmark.get("endpoint") or endpoint_labelled(len(pool))
    schedule = args.schedule or benchmark.get("schedule") or (size,)
    budgets = sorted({n for n in schedule if n <= size} | {size})
    images = [image for image, _ in (*layout.pool, *layout.test)]  # as the benchmark: the same window
    model, patch = prepare_model(
        Path(args.model or committed_model()), work / "model", Window(args.window), images
    )
    finetune = BenchmarkConfig().finetune(KNOWN_ARMS[FULL_METHOD], args.seed, patch)
    trainer = SetTrainer(layout.root, model, finetune, work, args.device)
    folder = out / FOLDER
    search_file = folder / f"{ORACLE_ARM}-seed{args.seed}-search.json"
    key = {"pool": pool, "size": size, "candidates": args.candidates, "seed": args.seed}
    saved = json.loads(search_file.read_text()) if search_file.is_file() else {}
    done = [OracleStep(**s) for s in saved.get("steps", [])] if saved.get("key") == key else []
    cost = search_cost(len(pool), size, args.candidates)
    with tqdm(total=cost, desc="oracle fine-tunes", unit="fine-tune", disable=args.no_progress) as bar:
        bar.update(search_cost(len(pool), len(done), args.candidates))

        def evaluate(labelled: tuple[str, ...]) -> float:
            dice = trainer.validation_dice(labelled)
            bar.update(1)
            return dice

        def save(steps: list[OracleStep]) -> None:
            write_json_atomic(search_file, {"key": key, "steps": [asdict(s) for s in steps]})
            last = steps[-1]
            tqdm.write(
                f"oracle step {len(steps)}: {last.picked} (validation Dice {last.validation_dice:.4f})"
            )

        steps = greedy_oracle(pool, size, evaluate, args.candidates, args.seed, done, save)
    picks = [s.picked for s in steps]
    records, previous = [], 0
    for number, n in enumerate(budgets, start=1):  # each budget's set trained once more, scored on test
        records.append(
            replace(trainer.run(tuple(picks[:n]), on_test=True), round=number, picked=picks[previous:n])
        )
        previous = n
    result = RunResult(ORACLE_ARM, args.seed, "supervised", records)
    write_json_atomic(folder / f"{ORACLE_ARM}-seed{args.seed}.json", result.to_json())
    for record in records:
        names = ", ".join(picks[: record.n_labelled])
        print(f"oracle, {record.n_labelled} labelled: test Dice {record.test_dice:.4f}, picked {names}")
    print(f"wrote {folder}; rerun `asfda benchmark ... --report-only --out {out}` for the headroom")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "oracle",
        help="the headroom's oracle: greedy forward search for a labelled set on the validation split",
        description=run_oracle.__doc__,
    )
    parser.add_argument("--dataset", required=True, type=Path, metavar="DIR", help="the benchmark's dataset")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="the benchmark's results folder"
    )
    parser.add_argument("--work", type=Path, metavar="DIR", help="scratch (default: OUT/work)")
    parser.add_argument("--model", type=Path, help="source model folder (default: Resources/SourceModel)")
    parser.add_argument(
        "--size",
        type=int,
        help="labelled cases to reach (default: OUT/run.json's endpoint, else 10 %% of the pool)",
    )
    parser.add_argument(
        "--schedule",
        nargs="+",
        type=int,
        help="budgets scored on test (default: OUT/run.json's, up to the size)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help="pool cases tried per step, a random subset (0: all); one fine-tune each",
    )
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning seed and candidate draws")
    parser.add_argument("--window", choices=("volume", "model"), default="volume")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_oracle)
