"""Sub-commands over a session folder: create, add, remove, rank, predict, label, finetune, evaluate, loop.

The commands that write into a session (add, remove, rank, predict, label, finetune) take the session's lock,
the one a running backend holds: beside a backend they refuse with a clear message instead of racing its
jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..config import FinetuneConfig, QueryConfig, QueryStrategy
from ..errors import StoreError
from ..evaluation import evaluate_model, paired_files
from ..finetune.settings import add_finetune_flags, apply_finetune_flags
from ..io.volumes import VOLUME_SUFFIXES, case_name, volume_suffix
from ..models.cli import add_trust_flag
from ..reporting import ranking_table
from ..session.lock import session_lock
from ..session.session import AdaptationSession

BAR_FORMAT = "{l_bar}{bar}| {elapsed}<{remaining} {postfix}"


class ProgressBar:
    """tqdm bar fed by the engine's (fraction, message) callbacks, with elapsed time and ETA; a context
    manager, so that an error is printed on a line of its own, never onto the bar."""

    def __init__(self, description: str):
        self.bar = tqdm(total=1000, desc=description, leave=False, bar_format=BAR_FORMAT)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.update(int(fraction * 1000) - self.bar.n)
        self.bar.set_postfix_str(message)

    def close(self) -> None:
        self.bar.close()


def add_session_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", required=True, type=Path, help="session folder")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda[:N] or mps"
    )


def open_session(args) -> AdaptationSession:
    """Open the session, saying when a round was cut short since it was last opened."""
    session = AdaptationSession.open(args.session, args.device)
    for number in session.store.interrupted_rounds:
        print(
            f"note: fine-tuning round {number} was interrupted (its process died); nothing of it was kept, "
            f"model {session.store.active_version} is still active",
            file=sys.stderr,
        )
    return session


@contextlib.contextmanager
def writing(args, what: str) -> Iterator[AdaptationSession]:
    """The session opened under its lock (refused while a backend serves it)."""
    root = Path(args.session)
    if not (root / "session.json").is_file():
        raise StoreError("not an ASFDA session (session.json missing)", root)
    with session_lock(root, user=f"'asfda {what}'"):
        yield open_session(args)


def report_duplicates(files: list[Path], records) -> None:
    """Two files with the same voxels are one case: say which file the later one duplicates."""
    first: dict[str, Path] = {}
    for path, record in zip(files, records):
        if record.id in first:
            print(f"note: {path} has the same voxels as {first[record.id]}: kept once, as case {record.name}")
        else:
            first[record.id] = path


def run_create(args) -> int:
    session = AdaptationSession.create(
        args.session,
        args.model,
        args.device,
        query=QueryConfig(budget=args.budget),
        finetune=apply_finetune_flags(FinetuneConfig(), args),
        trust_bundle_code=args.trust_bundle_code,
    )
    added = session.add_folder(args.images) if args.images else []
    if args.images:
        report_duplicates(session.volume_files(args.images), added)
    cases = len({record.id for record in added})
    print(f"created session {session.store.root} with {cases} cases, model {args.model}")
    return 0


def run_add(args) -> int:
    if not args.paths and not args.channels:
        raise StoreError("nothing to add: give volumes, folders or --channels VOLUME ...")
    with writing(args, "add") as session:
        for path in args.paths:
            if Path(path).is_dir():
                added = session.add_folder(path)
                report_duplicates(session.volume_files(path), added)
            else:
                added = [session.add_volume(path)]
            for record in added:
                print(f"{record.id}  {record.name}")
        if args.channels:
            record = session.add_channels(args.channels)
            print(f"{record.id}  {record.name}  ({len(args.channels)} channels)")
    return 0


def run_remove(args) -> int:
    with writing(args, "remove") as session:
        record = session.remove_case(resolve_case(session, args.case))
    print(f"removed case {record.name} ({record.id}); its volume {record.source_path} is left where it was")
    return 0


def run_rank(args) -> int:
    with writing(args, "rank") as session:  # it writes the scores and the ranking into the session
        config = session.query_config
        config.strategy = QueryStrategy(args.strategy) if args.strategy else config.strategy
        with ProgressBar("scoring") as bar:
            ranking = session.rank(config, progress=bar)
    for reason in session.skipped.values():
        print(f"skipped {reason}", file=sys.stderr)
    print(f"model version {session.store.active_version}, strategy {config.strategy.value}")
    print(ranking_table(ranking, {r.id: r.name for r in session.store.cases()}, config.strategy))
    if args.output:
        rows = [{**row.__dict__, "name": session.store.case(row.case_id).name} for row in ranking]
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


def run_predict(args) -> int:
    if volume_suffix(args.output) not in VOLUME_SUFFIXES:
        raise StoreError(
            f"cannot hold a 3D label map: write one of {', '.join(VOLUME_SUFFIXES)}", Path(args.output)
        )
    with writing(args, "predict") as session:  # it caches the label map in the session
        case_id = resolve_case(session, args.case)
        print(f"predicting case {args.case} with model {session.store.active_version} ...", flush=True)
        path = session.write_prediction(case_id, args.output)
    print(f"wrote {path} (model {session.store.active_version})")
    return 0


def run_label(args) -> int:
    with writing(args, "label") as session:
        print(f"checking {args.mask} against case {args.case} ...", flush=True)
        path = session.submit_label(resolve_case(session, args.case), args.mask)
    print(f"stored {path}")
    return 0


def run_finetune(args) -> int:
    with writing(args, "finetune") as session:
        config = apply_finetune_flags(session.finetune_config, args)
        with ProgressBar("fine-tuning") as bar:
            version = session.finetune(config, progress=bar)
    print(f"model version {version.id} (parent {version.parent}): {json.dumps(version.metrics)}")
    return 0


def run_evaluate(args) -> int:
    session = open_session(args)
    for folder in (args.references, args.images):
        if folder is not None and not Path(folder).is_dir():
            raise StoreError("not a folder", Path(folder))
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
    if not pairs:
        raise StoreError(
            "no reference mask is named like a volume (case.nii.gz for case.nii.gz): nothing to evaluate",
            Path(args.references),
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

    finetune = apply_finetune_flags(FinetuneConfig(), args)  # the shipped recipe, changed by the flags given
    settings = LoopSettings(
        rounds=args.rounds,
        budget=args.budget,
        strategy=QueryStrategy(args.strategy),
        pick_while_training=args.pick_while_training,
        finetune=finetune,
        trust_bundle_code=args.trust_bundle_code,
    )
    root = Path(args.session)
    root.mkdir(parents=True, exist_ok=True)  # the lock lives in the session folder, made or reused here
    with session_lock(root, user="'asfda loop'"):
        loop(
            root,
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


STEPS_RULE = (
    f"{FinetuneConfig().steps} + {FinetuneConfig().steps_per_labelled} per labelled case; "
    "--steps alone gives every round exactly that many"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("create", help="create a session from a model and a folder of volumes")
    add_session_argument(parser)
    parser.add_argument(
        "--model", required=True, help="MONAI bundle folder, model folder or TorchScript file"
    )
    parser.add_argument("--images", help="folder of target-domain volumes to add")
    parser.add_argument("--budget", type=int, default=1, help="cases to ask for each round")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"training steps a round (default: {STEPS_RULE})",
    )
    add_finetune_flags(parser)
    add_trust_flag(parser)
    parser.set_defaults(func=run_create)

    parser = subparsers.add_parser("add", help="add volumes or folders of volumes to a session")
    add_session_argument(parser)
    parser.add_argument(
        "paths",
        nargs="*",
        help=f"volume files ({', '.join(VOLUME_SUFFIXES)}, 4-D or vector for models of "
        "several channels) or folders",
    )
    parser.add_argument(
        "--channels",
        nargs="+",
        metavar="VOLUME",
        help="one case as its co-registered channel volumes, in the model's channel order (BraTS: T1 T1c T2 "
        "FLAIR)",
    )
    parser.set_defaults(func=run_add)

    parser = subparsers.add_parser(
        "remove", help="remove an unlabelled case from the pool (its volume file is left in place)"
    )
    add_session_argument(parser)
    parser.add_argument("--case", required=True, help="case id or name")
    parser.set_defaults(func=run_remove)

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
    parser.add_argument(
        "--steps",
        type=int,
        help=f"training steps of this round (default: the session's, {STEPS_RULE} unless set at create)",
    )
    add_finetune_flags(parser)
    parser.set_defaults(func=run_finetune)

    parser = subparsers.add_parser("evaluate", help="Dice and HD95 against a folder of reference masks")
    add_session_argument(parser)
    parser.add_argument("--references", required=True, help="reference masks named like their volumes")
    parser.add_argument("--images", help="volumes to evaluate (default: the session's cases)")
    parser.set_defaults(func=run_evaluate)

    parser = subparsers.add_parser("loop", help="query, annotate (from reference masks), fine-tune, repeat")
    add_session_argument(parser)
    parser.add_argument(
        "--model", required=True, help="MONAI bundle folder, model folder or TorchScript file"
    )
    parser.add_argument("--images", required=True, help="pool of target volumes")
    parser.add_argument("--references", required=True, help="their masks, playing the annotator")
    parser.add_argument("--test-images", help="held-out volumes to report Dice on")
    parser.add_argument("--test-references", help="masks of the held-out volumes, named like them")
    parser.add_argument("--rounds", type=int, default=3, help="query/fine-tune rounds (default: %(default)s)")
    parser.add_argument("--budget", type=int, default=1, help="cases labelled a round (default: %(default)s)")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"training steps a round (default: {STEPS_RULE})",
    )
    parser.add_argument(
        "--strategy",
        default=QueryConfig().strategy.value,
        choices=[s.value for s in QueryStrategy],
        help="query strategy (default: %(default)s)",
    )
    parser.add_argument(
        "--pick-while-training",
        action="store_true",
        help="pick each round's case from the ranking in hand when the previous round started, as the "
        "Slicer module serves the next case at once after Save and next (default: wait for the new "
        "model's ranking, as the benchmark does)",
    )
    add_finetune_flags(parser)  # --no-semi-supervised: labelled cases only
    add_trust_flag(parser)
    parser.set_defaults(func=run_loop)
