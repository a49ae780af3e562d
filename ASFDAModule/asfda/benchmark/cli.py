"""Sub-commands of the benchmark stage: ``asfda make-dataset`` (and the benchmark runs that use it).

To add a sub-command, write an ``_add_<name>(subparsers)`` function that sets ``func`` on its parser and
list it in ``SUBCOMMANDS``; ``asfda.cli.main`` calls :func:`register`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from ..errors import ASFDAError
from .datasets.dataset import DatasetConfig, build_dataset, is_built
from .datasets.layout import dataset_layout

_DEFAULTS = {f.name: f.default for f in fields(DatasetConfig)}


def make_heterogeneous(args: argparse.Namespace) -> int:
    from .datasets.heterogeneous import HeterogeneousConfig, build_heterogeneous

    config = HeterogeneousConfig(
        n_pool=args.n_pool if args.n_pool is not None else 60,
        n_val=args.n_val if args.n_val is not None else 10,
        n_test=args.n_test if args.n_test is not None else 30,
        spacing_mm=args.spacing if args.spacing is not None else 2.0,
        seed=args.seed,
    )
    start = time.perf_counter()
    build_heterogeneous(args.out, config, progress=not args.no_progress)
    layout = dataset_layout(args.out)
    print(
        f"{args.out}: heterogeneous target site, {len(layout.pool)} pool / {len(layout.val)} validation / "
        f"{len(layout.test)} test cases, base grid {layout.spacing_mm:g} mm, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


def make_site(args: argparse.Namespace) -> int:
    from .datasets.site import SiteConfig, build_site

    config = SiteConfig(
        n_pool=args.n_pool if args.n_pool is not None else 60,
        n_val=args.n_val if args.n_val is not None else 5,
        n_test=args.n_test if args.n_test is not None else 5,
        spacing_mm=args.spacing if args.spacing is not None else 2.0,
        seed=args.seed,
    )
    start = time.perf_counter()
    build_site(args.out, config, progress=not args.no_progress)
    layout = dataset_layout(args.out)
    print(
        f"{args.out}: site target pool, {len(layout.pool)} pool (by prevalence) / {len(layout.val)} "
        f"validation / {len(layout.test)} test ({config.n_val} and {config.n_test} per sub-population), "
        f"base grid {layout.spacing_mm:g} mm, {time.perf_counter() - start:.1f} s"
    )
    return 0


def make_dataset(args: argparse.Namespace) -> int:
    """Build (or find already built) a benchmark dataset and say how long it took: ``--config small`` is
    the seeded T1 -> T2 pair (fast), ``--config heterogeneous`` (the default for reported results) a target
    site that mixes protocols i.i.d., ``--config site`` a pool with a hospital archive's sub-populations."""
    if args.config == "heterogeneous":
        return make_heterogeneous(args)
    if args.config == "site":
        return make_site(args)
    for name in ("n_pool", "n_test", "spacing"):
        if getattr(args, name) is None:
            setattr(args, name, _DEFAULTS["spacing_mm" if name == "spacing" else name])
    config = DatasetConfig(
        n_source=args.n_source,
        n_pool=args.n_pool,
        n_test=args.n_test,
        spacing_mm=args.spacing,
        seed=args.seed,
        target_skull_stripped_fraction=args.skull_stripped_fraction,
    )
    cached = is_built(args.out, config)
    start = time.perf_counter()
    build_dataset(args.out, config, progress=not args.no_progress)
    layout = dataset_layout(args.out)
    n_cases = sum(1 for _ in layout.pairs())
    size = "x".join(str(n) for n in layout.size)
    what = "already built" if cached else f"built in {time.perf_counter() - start:.1f} s"
    print(
        f"{args.out}: {n_cases} cases ({len(layout.source)} source, {len(layout.pool)} pool, "
        f"{len(layout.test)} test) of {size} voxels at {layout.spacing_mm:g} mm, {what}"
    )
    return 0


def _add_make_dataset(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-dataset",
        help="build a benchmark dataset: heterogeneous target site (default) or the small T1 -> T2 pair",
        description=make_dataset.__doc__,
    )
    parser.add_argument(
        "--config",
        choices=("heterogeneous", "site", "small"),
        default="heterogeneous",
        help="heterogeneous: mixed protocols (60 pool / 10 val / 30 test at 2 mm by default); site: a "
        "hospital archive's sub-populations (60 pool by prevalence / 5 val and 5 test per sub-population); "
        "small: 16 source T1 / 16 pool T2 / 6 test T2 at 3 mm",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of the dataset (created)")
    parser.add_argument("--n-source", type=int, default=_DEFAULTS["n_source"], help="T1 training cases")
    parser.add_argument("--n-pool", type=int, help="target cases to query (default 60 / 16)")
    parser.add_argument(
        "--n-val", type=int, help="validation cases (heterogeneous: 10; site: 5 per sub-population)"
    )
    parser.add_argument(
        "--n-test", type=int, help="held-out target test cases (default 30 / 6; site: 5 per sub-population)"
    )
    parser.add_argument("--spacing", type=float, metavar="MM", help="isotropic base voxel size (2 / 3 mm)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS["seed"])
    parser.add_argument(
        "--skull-stripped-fraction",
        type=float,
        default=_DEFAULTS["target_skull_stripped_fraction"],
        help="share of target cases drawn from the skull-stripped T2",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=make_dataset)


def train_source(args: argparse.Namespace) -> int:
    """Train the source-domain model (the stand-in for a pretrained foundation model) on the source split."""
    from ..models.loading import resolve_device
    from .datasets.source_model import CPU_NETWORK, GPU_NETWORK, SourceTrainingConfig, train_source_model

    layout = dataset_layout(args.dataset)
    if not layout.source:
        raise ASFDAError(
            "this dataset has no source split (a heterogeneous target site): train on one made with "
            "asfda make-dataset --config small",
            args.dataset,
        )
    config = SourceTrainingConfig(
        network=GPU_NETWORK if args.network == "swinunetr" else CPU_NETWORK,
        steps=args.steps,
        seed=args.seed,
        roi_size=(args.roi,) * 3,
        spacing_mm=layout.spacing_mm,
    )
    start = time.perf_counter()
    out = train_source_model(
        list(layout.source), layout.labels, args.out, config, resolve_device(args.device)
    )
    print(
        f"{out}: source model trained in {time.perf_counter() - start:.0f} s "
        f"({args.steps} steps, seed {args.seed})"
    )
    return 0


def _add_train_source(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-source",
        help="train the source model on the dataset's source split",
        description=train_source.__doc__,
    )
    parser.add_argument("--dataset", required=True, metavar="DIR", help="folder made by make-dataset")
    parser.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    parser.add_argument("--network", choices=("segresnet", "swinunetr"), default="segresnet")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--roi", type=int, default=64, help="window and patch side in voxels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=train_source)


def command_line(name: str, args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (every option spelled out, defaults included), for run.json."""
    import shlex

    words = ["asfda", name]
    for key, value in vars(args).items():
        if key in ("func", "command", "verbose") or value is None or value is False:
            continue
        if key == "schedule" and getattr(args, "budgets", None):
            continue  # the budgets replace the schedule: naming both would misread the run
        option = "--" + key.replace("_", "-")
        if value is True:
            words.append(option)
        elif isinstance(value, (list, tuple)):
            words += [option, *map(str, value)]
        else:
            words += [option, str(value)]
    return shlex.join(words)


def benchmark(args: argparse.Namespace) -> int:
    """Adapt the source model with every strategy at the same schedule, several seeds; write the tables,
    the plot and the costs. Every arm fine-tunes with the shipped recipe (as `asfda create`) unless it is a
    recipe arm; no flag changes the headline arm's training. Resumable: finished runs are kept and skipped."""
    import sys

    from .demo import committed_model
    from .running.config import BenchmarkConfig
    from .running.runner import ARMS, Window, run_benchmark

    config = BenchmarkConfig(
        arms=tuple(args.strategies or ARMS),
        seeds=tuple(args.seeds),
        schedule=tuple(args.schedule),
        window=Window(args.window),
        all_labelled=not args.no_all_labelled,
        all_labelled_steps=args.all_labelled_steps,
        device=args.device,
        threads=args.threads,
        workers=args.workers,
        isolate=not args.in_process,
        keep_sessions=args.keep_sessions,
        budgets=tuple(args.budgets) if args.budgets else None,
        endpoint_percent=args.endpoint,
        asfda_query=args.asfda_query,
        asfda_fine_tuning=args.asfda_fine_tuning,
        random_seeds=tuple(args.random_seeds or ()),
        training_noise=tuple(args.training_noise or ()),
        training_noise_recipe=args.training_noise_recipe,
    )
    command = command_line("benchmark", args)
    outcome = run_benchmark(
        args.dataset,
        args.model or committed_model(),
        args.out,
        config,
        args.work,
        command,
        progress=not args.no_progress,
        report_only=args.report_only,
    )
    print((Path(args.out) / "results.md").read_text())
    if (Path(args.out) / "statistics.md").is_file():
        print((Path(args.out) / "statistics.md").read_text())
    print("wrote " + ", ".join(str(p) for p in outcome.files))
    for name, error in outcome.failures.items():
        print(f"run {name} failed: {error}", file=sys.stderr)
    return 1 if outcome.failures else 0


def _add_benchmark(subparsers: argparse._SubParsersAction) -> None:
    from .running.arms import ARMS, FULL_FINE_TUNING, FULL_METHOD, KNOWN_ARMS, RECIPE_ARMS, SSL_SETTINGS
    from .running.config import BenchmarkConfig
    from .running.preparation import Window

    defaults = BenchmarkConfig()
    parser = subparsers.add_parser(
        "benchmark",
        help="every query strategy at the same annotation schedule: Dice/HD95 tables, AUC, plot, costs",
        description=benchmark.__doc__,
    )
    parser.add_argument(
        "--dataset",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder made by make-dataset, or any folder with images/ + labels/ (or imagesTr/ + labelsTr/)",
    )
    parser.add_argument(
        "--model", type=Path, help="source model folder (default: the repository's Resources/SourceModel)"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="results folder")
    parser.add_argument("--work", type=Path, metavar="DIR", help="sessions and scratch (default: OUT/work)")
    variants = ", ".join(a for a in KNOWN_ARMS if a not in ARMS)
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=list(KNOWN_ARMS),
        metavar="NAME",
        help=f"default: all of {', '.join(ARMS)}; variants: {variants}",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    parser.add_argument(
        "--schedule",
        nargs="+",
        type=int,
        default=list(defaults.schedule),
        help="labelled cases after each round",
    )
    parser.add_argument(
        "--budgets",
        nargs="+",
        type=float,
        metavar="PERCENT",
        help="labelled share of the pool after each round, e.g. 2.5 5 10 20 (replaces --schedule)",
    )
    parser.add_argument("--endpoint", type=float, default=10.0, metavar="PERCENT", help="pre-stated endpoint")
    parser.add_argument("--random-seeds", nargs="+", type=int, help="extra seeds for random (more draws)")
    parser.add_argument(
        "--training-noise",
        nargs="+",
        type=int,
        metavar="N",
        help="also train one fixed labelled set of N pool cases once per seed with the full method's "
        "fine-tuning (summary.json: training_noise)",
    )
    parser.add_argument(
        "--training-noise-recipe",
        default=FULL_METHOD,
        choices=[FULL_METHOD, *RECIPE_ARMS],
        metavar="ARM",
        help="train the --training-noise sets with this recipe arm's fine-tuning instead (default: the "
        "full method's)",
    )
    parser.add_argument(
        "--asfda-query",
        default="default",
        help="the full method's query: default, auto (best candidate on the validation split) or an arm name",
    )
    parser.add_argument(
        "--asfda-fine-tuning",
        default="default",
        help=f"the full method's fine-tuning: default ({FULL_FINE_TUNING}), supervised, or a semi-supervised "
        f"setting ({', '.join(SSL_SETTINGS)})",
    )
    parser.add_argument(
        "--window",
        choices=[w.value for w in Window],
        default=defaults.window.value,
        help="inference window: the whole volume (fast) or the model's own",
    )
    parser.add_argument("--no-all-labelled", action="store_true", help="skip the all-labelled ceiling")
    parser.add_argument("--all-labelled-steps", type=int, help="default: an arm's whole-schedule steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads per run")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (separate processes)")
    parser.add_argument(
        "--in-process", action="store_true", help="run everything in this process (one at a time)"
    )
    parser.add_argument("--keep-sessions", action="store_true", help="keep each run's session folder")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the saved runs")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=benchmark)


def demo(args: argparse.Namespace) -> int:
    """A small T1 -> T2 dataset, the committed source model, three rounds of ASFDA: held-out Dice per round,
    the ranking with DKD and ASD, and a plot. A few minutes on a laptop CPU."""
    from .demo import DemoConfig, run_demo
    from .running.runner import Window

    config = DemoConfig(
        rounds=args.rounds,
        steps=args.steps,
        n_pool=args.n_pool,
        window=Window(args.window),
        device=args.device,
        threads=args.threads,
    )
    run_demo(args.out, args.model, config, progress=not args.no_progress)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    from .demo import DemoConfig
    from .running.runner import Window

    defaults = DemoConfig()
    parser = subparsers.add_parser(
        "demo",
        help="three rounds of ASFDA on a small real-anatomy T1 -> T2 dataset",
        description=demo.__doc__,
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder for the dataset, session, plot"
    )
    parser.add_argument(
        "--model", type=Path, help="source model folder (default: the repository's Resources/SourceModel)"
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--steps", type=int, help="fine-tuning steps a round (default: the shipped recipe's, as a session's)"
    )
    parser.add_argument("--n-pool", type=int, default=defaults.n_pool, help="target cases to query")
    parser.add_argument("--window", choices=[w.value for w in Window], default=defaults.window.value)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=demo)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_make_dataset,
    _add_train_source,
    _add_benchmark,
    _add_demo,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the benchmark's sub-commands to the ``asfda`` parser."""
    for add in SUBCOMMANDS:
        add(subparsers)
