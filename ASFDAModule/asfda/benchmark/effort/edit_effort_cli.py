"""``asfda proposals-bench``: the edit-effort benchmark of the few-shot proposals (``edit_effort.py``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ...config import FinetuneConfig
from ...models.devices import resolve_device
from ...proposals import DeformableStage, RegistrationSettings
from .edit_effort import EffortConfig, run_edit_effort

SOURCE_MODEL = Path(__file__).resolve().parents[4] / "Resources" / "SourceModel"


def config_from_args(args: argparse.Namespace) -> EffortConfig:
    finetune = FinetuneConfig()
    if args.finetune_steps is not None:  # a test option: not the shipped recipe's round length
        finetune = dataclasses.replace(finetune, steps=args.finetune_steps, steps_per_labelled=0)
    registration = RegistrationSettings()
    if args.affine_only:  # a test option: not the registration the product runs
        registration = dataclasses.replace(registration, deformable=DeformableStage.NONE)
    return EffortConfig(
        seeds=tuple(range(args.seeds[0])) if len(args.seeds) == 1 else tuple(args.seeds),
        budgets=tuple(sorted(set(args.budgets))),
        query_split=args.query_split,
        max_queries=args.max_queries,
        finetune=finetune,
        registration=registration,
        threads=args.threads,
        device=str(resolve_device(args.device)),
    )


def proposals_bench(args: argparse.Namespace) -> int:
    summary = run_edit_effort(
        args.dataset, args.model, args.out, config_from_args(args), progress=not args.no_progress
    )
    print((args.out / "results.md").read_text())
    return 0 if summary["budgets"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "proposals-bench",
        help="edit effort: Dice of the served starting segmentation against the model's, at 0-3 labelled",
        description=__doc__,
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a folder built by asfda make-dataset")
    parser.add_argument("--out", type=Path, required=True, help="results folder (runs/ resume)")
    parser.add_argument(
        "--model", type=Path, default=SOURCE_MODEL, help="source model (default: Resources/SourceModel)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[8], help="a count (0..N-1) or the seeds themselves"
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 1, 2, 3], help="labelled cases")
    parser.add_argument("--query-split", default="test", help="the split whose cases are queried")
    parser.add_argument("--max-queries", type=int, help="query only the split's first N cases")
    parser.add_argument(
        "--finetune-steps", type=int, help="test option: a round of N steps instead of the recipe's"
    )
    parser.add_argument("--affine-only", action="store_true", help="test option: no B-spline stage")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=proposals_bench)
