"""Sub-commands over a session folder: create, rank, predict, label, finetune, evaluate, loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from ..config import FinetuneConfig, QueryConfig, QueryStrategy
from ..evaluation import evaluate_model, paired_files
from ..finetune.settings import add_finetune_flags, apply_finetune_flags
from ..io.volumes import VOLUME_SUFFIXES, case_name
from ..reporting import ranking_table
from ..session.session import AdaptationSession


class ProgressBar:
    """tqdm bar fed by the engine's (fraction, message) callbacks."""

    def __init__(self, description: str):
        self.bar = tqdm(total=1000, desc=description, leave=False, bar_format="{l_bar}{bar}| {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.update(int(fraction * 1000) - self.bar.n)
        self.bar.set_postfix_str(message)

    def close(self) -> None:
        self.bar.close()


def add_session_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", required=True, type=Path, help="session folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


def run_create(args) -> int:
    session = AdaptationSession.create(
        args.session,
        args.model,
        args.device,
        query=QueryConfig(budget=args.budget),
        finetune=apply_finetune_flags(FinetuneConfig(), args),
    )
    added = session.add_folder(args.images) if args.images else []
    print(f"created session {session.store.root} with {len(added)} cases, model {args.model}")
    return 0


def run_add(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    for path in args.paths:
        added = session.add_folder(path) if Path(path).is_dir() else [session.add_volume(path)]
        for record in added:
            print(f"{record.id}  {record.name}")
    return 0


def run_rank(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    config = session.query_config
    config.strategy = QueryStrategy(args.strategy) if args.strategy else config.strategy
    bar = ProgressBar("scoring")
    ranking = session.rank(config, progress=bar)
    bar.close()
    print(f"model version {session.store.active_version}, strategy {config.strategy.value}")
    print(ranking_table(ranking, {r.id: r.name for r in session.store.cases()}))
    if args.output:
        rows = [{**row.__dict__, "name": session.store.case(row.case_id).name} for row in ranking]
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


def run_predict(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    case_id = resolve_case(session, args.case)
    path = session.write_prediction(case_id, args.output)
    print(f"wrote {path} (model {session.store.active_version})")
    return 0


def run_label(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    path = session.submit_label(resolve_case(session, args.case), args.mask)
    print(f"stored {path}")
    return 0


def run_finetune(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    config = apply_finetune_flags(session.finetune_config, args)
    bar = ProgressBar("fine-tuning")
    version = session.finetune(config, progress=bar)
    bar.close()
    print(f"model version {version.id} (parent {version.parent}): {json.dumps(version.metrics)}")
    return 0


def run_evaluate(args) -> int:
    session = AdaptationSession.open(args.session, args.device)
    images = Path(args.images) if args.images else None
    pairs = (
        paired_files(images, Path(args.references))
        if images
        else [
            (Path(r.source_path), ref)
            for r in session.store.cases()
            for ref in Path(args.references).iterdir()
            if case_name(ref) == r.name
        ]
    )
    evaluation = evaluate_model(session.model(), pairs, session.device, progress=True)
    for case in evaluation.cases:
        print(f"{case.name:<24} Dice {case.mean_dice:.4f}  HD95 {case.mean_hd95:.2f} mm")
    print(
        f"mean Dice {evaluation.mean_dice:.4f}, mean HD95 {evaluation.mean_hd95:.2f} mm "
        f"({len(evaluation.cases)} cases, model {session.store.active_version})"
    )
    return 0


def run_loop(args) -> int:
    """The whole loop with reference masks playing the annotator."""
    from ..loop import LoopSettings
    from ..loop import run_loop as loop

    settings = LoopSettings(
        rounds=args.rounds,
        budget=args.budget,
        steps=args.steps,
        strategy=QueryStrategy(args.strategy),
        finetune=apply_finetune_flags(
            FinetuneConfig(steps=args.steps, semi_supervised=args.semi_supervised is not False), args
        ),
    )
    loop(
        args.session,
        args.model,
        Path(args.images),
        Path(args.references),
        settings,
        args.device,
        test_images=Path(args.test_images) if args.test_images else None,
        test_references=Path(args.test_references) if args.test_references else None,
    )
    return 0


def resolve_case(session: AdaptationSession, case: str) -> str:
    """A case given by id or by name."""
    ids = {r.id for r in session.store.cases()}
    return case if case in ids else session.case_by_name(case).id


def register(subparsers) -> None:
    parser = subparsers.add_parser("create", help="create a session from a model and a folder of volumes")
    add_session_argument(parser)
    parser.add_argument(
        "--model", required=True, help="MONAI bundle folder, model folder or TorchScript file"
    )
    parser.add_argument("--images", help="folder of target-domain volumes to add")
    parser.add_argument("--budget", type=int, default=1, help="cases to ask for each round")
    parser.add_argument("--steps", type=int, default=FinetuneConfig().steps, help="training steps a round")
    add_finetune_flags(parser)
    parser.set_defaults(func=run_create)

    parser = subparsers.add_parser("add", help="add volumes or folders of volumes to a session")
    add_session_argument(parser)
    parser.add_argument("paths", nargs="+")
    parser.set_defaults(func=run_add)

    parser = subparsers.add_parser("rank", help="score the pool and print the ranking (DKD, ASD, next case)")
    add_session_argument(parser)
    parser.add_argument("--strategy", choices=[s.value for s in QueryStrategy])
    parser.add_argument("--output", help="also save the table as JSON")
    parser.set_defaults(func=run_rank)

    parser = subparsers.add_parser("predict", help="write the active model's label map of a case")
    add_session_argument(parser)
    parser.add_argument("--case", required=True, help="case id or name")
    parser.add_argument("--output", required=True, help=f"file ({', '.join(VOLUME_SUFFIXES)})")
    parser.set_defaults(func=run_predict)

    parser = subparsers.add_parser("label", help="submit the corrected mask of a case")
    add_session_argument(parser)
    parser.add_argument("--case", required=True, help="case id or name")
    parser.add_argument("--mask", required=True, help="label map on the case's grid")
    parser.set_defaults(func=run_label)

    parser = subparsers.add_parser("finetune", help="run one selective semi-supervised fine-tuning round")
    add_session_argument(parser)
    parser.add_argument("--steps", type=int)
    add_finetune_flags(parser)
    parser.set_defaults(func=run_finetune)

    parser = subparsers.add_parser("evaluate", help="Dice and HD95 against a folder of reference masks")
    add_session_argument(parser)
    parser.add_argument("--references", required=True, help="reference masks named like their volumes")
    parser.add_argument("--images", help="volumes to evaluate (default: the session's cases)")
    parser.set_defaults(func=run_evaluate)

    parser = subparsers.add_parser("loop", help="query, annotate (from reference masks), fine-tune, repeat")
    add_session_argument(parser)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True, help="pool of target volumes")
    parser.add_argument("--references", required=True, help="their masks, playing the annotator")
    parser.add_argument("--test-images", help="held-out volumes to report Dice on")
    parser.add_argument("--test-references")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1)
    parser.add_argument("--steps", type=int, default=FinetuneConfig().steps)
    parser.add_argument(
        "--strategy", default=QueryStrategy.ASFDA.value, choices=[s.value for s in QueryStrategy]
    )
    add_finetune_flags(parser)  # --no-semi-supervised: labelled cases only
    parser.set_defaults(func=run_loop)
