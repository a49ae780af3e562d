"""Sub-commands of the benchmark stage: ``asfda make-dataset`` (and the benchmark runs that use it).

To add a sub-command, write an ``_add_<name>(subparsers)`` function that sets ``func`` on its parser and
list it in ``SUBCOMMANDS``; ``asfda.cli.main`` calls :func:`register`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import fields

from .dataset import DatasetConfig, build_dataset, dataset_layout, is_built

_DEFAULTS = {f.name: f.default for f in fields(DatasetConfig)}


def make_dataset(args: argparse.Namespace) -> int:
    """Build (or find already built) the seeded T1 -> T2 benchmark and say how long it took."""
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
        help="build the seeded two-domain (T1 source, T2 target) benchmark dataset",
        description=make_dataset.__doc__,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of the dataset (created)")
    parser.add_argument("--n-source", type=int, default=_DEFAULTS["n_source"], help="T1 training cases")
    parser.add_argument("--n-pool", type=int, default=_DEFAULTS["n_pool"], help="T2 cases to query")
    parser.add_argument("--n-test", type=int, default=_DEFAULTS["n_test"], help="held-out T2 test cases")
    parser.add_argument(
        "--spacing", type=float, default=_DEFAULTS["spacing_mm"], metavar="MM", help="isotropic voxel size"
    )
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
    from .source_model import CPU_NETWORK, GPU_NETWORK, SourceTrainingConfig, train_source_model

    layout = dataset_layout(args.dataset)
    config = SourceTrainingConfig(network=GPU_NETWORK if args.network == "swinunetr" else CPU_NETWORK,
                                  steps=args.steps, seed=args.seed, roi_size=(args.roi,) * 3,
                                  spacing_mm=layout.spacing_mm)
    start = time.perf_counter()
    out = train_source_model(list(layout.source), layout.labels, args.out, config, resolve_device(args.device))
    print(f"{out}: source model trained in {time.perf_counter() - start:.0f} s ({args.steps} steps, seed {args.seed})")
    return 0


def _add_train_source(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train-source", help="train the source model on the dataset's source split",
                                   description=train_source.__doc__)
    parser.add_argument("--dataset", required=True, metavar="DIR", help="folder made by make-dataset")
    parser.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    parser.add_argument("--network", choices=("segresnet", "swinunetr"), default="segresnet")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--roi", type=int, default=64, help="window and patch side in voxels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=train_source)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_make_dataset, _add_train_source)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the benchmark's sub-commands to the ``asfda`` parser."""
    for add in SUBCOMMANDS:
        add(subparsers)
