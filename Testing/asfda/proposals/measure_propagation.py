"""Dice of label propagation from 1, 2, 3 labelled pool cases onto the other pool cases, and seconds a
registration, on a dataset that ``asfda make-dataset`` built.

Not a test (minutes): run it by hand on one core, e.g.
    asfda make-dataset --config heterogeneous --out /tmp/p23data --n-pool 8 --n-val 2 --n-test 2 \
        --spacing 3 --seed 7 --no-progress
    OMP_NUM_THREADS=1 PYTHONPATH=ASFDAModule nice -n 15 python \
        Testing/asfda/proposals/measure_propagation.py /tmp/p23data --queries 4
Each query's supports are the first k pool cases other than itself (``--query-split test``: the test
cases are the queries, one per sub-population in a ``--config site`` dataset); the volumes go through the
model space of a 3 mm, RAS, z-scored (non-zero) model (``--model``: that model's), as the engine's cases do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from asfda.inference.predictor import predict
from asfda.io.preprocessing import preprocess_case
from asfda.io.volumes import read_volume
from asfda.metrics import dice_per_class, mean_of
from asfda.models.loading import load_model
from asfda.models.spec import ModelSpec
from asfda.proposals import (
    Case,
    DeformableStage,
    ProposalKind,
    RegistrationSettings,
    choose_proposal,
    propagate_all,
)
from asfda.proposals.selection import proposal_from_warped


def model_space_cases(dataset: Path, spec: ModelSpec, split: str = "pool") -> list[Case]:
    manifest = json.loads((dataset / "dataset.json").read_text())
    spacing = tuple(float(s) for s in spec.spacing)
    cases = []
    for entry in manifest["cases"][split]:
        case = preprocess_case(
            read_volume(dataset / entry["image"]), spec, read_volume(dataset / entry["label"])
        )
        cases.append(
            Case(
                image=case.image[0].numpy(),
                spacing=spacing,
                labels=np.rint(case.label[0].numpy()).astype(np.int64),
                case_id=f"{entry['name']} ({entry['subpopulation']})"
                if "subpopulation" in entry
                else entry["name"],
            )
        )
    return cases


def model_predictions(model_path: Path | None, cases: list[Case]) -> list[np.ndarray] | None:
    """The model's class probabilities of each case on its model-space grid (None without a model)."""
    if model_path is None:
        return None
    model = load_model(model_path)
    return [predict(model, torch.as_tensor(case.image)[None]).probabilities.numpy() for case in cases]


def dice(labels: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    return mean_of(dice_per_class(labels, reference, num_classes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument(
        "--model", type=Path, help="e.g. Resources/SourceModel: its Dice, and a leave-one-out"
    )
    parser.add_argument("--queries", type=int, default=4, help="the last N pool cases are the queries")
    parser.add_argument("--query-split", help="query the cases of this split (e.g. test) instead")
    parser.add_argument("--supports", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--deformable", default="bspline", choices=[s.value for s in DeformableStage])
    parser.add_argument("--bspline-iterations", type=int, default=RegistrationSettings.bspline_iterations)
    parser.add_argument("--affine-samples", type=int, default=RegistrationSettings.affine_samples)
    parser.add_argument(
        "--affine-shrink", type=int, nargs="+", default=RegistrationSettings.affine_shrink_factors
    )
    args = parser.parse_args()
    labels = {int(k): v for k, v in json.loads((args.dataset / "dataset.json").read_text())["labels"].items()}
    spec = load_model(args.model).spec if args.model else ModelSpec(labels, spacing=(args.spacing,) * 3)
    cases, num_classes = model_space_cases(args.dataset, spec), len(labels)
    predictions = model_predictions(args.model, cases)
    settings = RegistrationSettings(
        deformable=DeformableStage(args.deformable),
        bspline_iterations=args.bspline_iterations,
        affine_samples=args.affine_samples,
        affine_shrink_factors=tuple(args.affine_shrink),
    )
    queries, pool = cases[-args.queries :], cases[: -args.queries]
    query_predictions = predictions[-args.queries :] if predictions is not None else None
    if args.query_split:
        pool, queries = cases, model_space_cases(args.dataset, spec, args.query_split)
        query_predictions = model_predictions(args.model, queries)
    measure_propagation(queries, pool, query_predictions, args.supports, num_classes, settings)
    if predictions is not None:
        for n in args.supports[1:]:
            started = time.perf_counter()
            choice = choose_proposal(pool[:n], predictions[:n], num_classes, settings=settings)
            dice = ", ".join(f"{k.value} {v:.3f}" for k, v in choice.dice.items())
            print(f"leave-one-out over {n} pool cases ({time.perf_counter() - started:.0f} s): {dice}")
            print(f"  {choice.summary()}")


def measure_propagation(queries, pool, predictions, supports, num_classes, settings) -> None:
    """Propagation from the first k pool cases onto each query, for each k; the model's Dice beside it."""
    largest = max(supports)
    kinds = ["majority", "weighted"] + (["agreement"] if predictions is not None else [])
    results = {k: {kind: [] for kind in kinds} for k in supports}
    model_dice, seconds, cpu_seconds = [], [], []  # wall time a registration; CPU time one (with warping)
    for query, prediction in zip(queries, predictions or [None] * len(queries)):
        started, cpu = time.perf_counter(), time.process_time()
        warped = propagate_all(query, pool[:largest], num_classes, settings)
        seconds += [w.seconds for w in warped]
        cpu_seconds.append((time.process_time() - cpu) / len(warped))
        order = {w.case_id: w for w in warped}
        for k in supports:
            chosen = [order[c.case_id] for c in pool[:k]]
            for kind in kinds:
                results[k][kind].append(
                    dice(
                        proposal_from_warped(
                            ProposalKind(kind), query, chosen, prediction, num_classes
                        ).labels,
                        query.labels,
                        num_classes,
                    )
                )
        if prediction is not None:
            model_dice.append(dice(prediction.argmax(0), query.labels, num_classes))
        print(
            f"{query.case_id}: {time.perf_counter() - started:.1f} s, "
            + ", ".join(
                f"k={k} {results[k]['majority'][-1]:.3f}/{results[k]['weighted'][-1]:.3f}" for k in supports
            )
            + (f", model {model_dice[-1]:.3f}" if model_dice else ""),
            flush=True,
        )
    print(
        f"seconds a registration ({settings.deformable.value}): wall mean {np.mean(seconds):.2f}, "
        f"max {np.max(seconds):.2f} over {len(seconds)}; CPU {np.mean(cpu_seconds):.2f} s a registration"
    )
    for k in supports:
        scores = ", ".join(f"{kind} {np.mean(values):.3f}" for kind, values in results[k].items())
        print(f"{k} support(s): {scores} (mean foreground Dice over {len(queries)} queries)")
    if model_dice:
        print(f"the model: {np.mean(model_dice):.3f}")


if __name__ == "__main__":
    main()
