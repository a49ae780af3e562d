"""Dice of label propagation from 1, 2, 3 labelled pool cases onto the other pool cases, and seconds a
registration, on a dataset that ``asfda make-dataset`` built.

Not a test (minutes): run it by hand on one core, e.g.
    asfda make-dataset --config heterogeneous --out /tmp/p23data --n-pool 8 --n-val 2 --n-test 2 \
        --spacing 3 --seed 7 --no-progress
    OMP_NUM_THREADS=1 PYTHONPATH=ASFDAModule nice -n 15 python \
        Testing/asfda/proposals/measure_propagation.py /tmp/p23data --queries 4
Each query's supports are the first k pool cases other than itself; the volumes go through the model space
of a 3 mm, RAS, z-scored (non-zero) model, as the engine's cases do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from asfda.io.preprocessing import preprocess_case
from asfda.io.volumes import read_volume
from asfda.metrics import dice_per_class, mean_of
from asfda.models.spec import ModelSpec
from asfda.proposals import (
    Case,
    DeformableStage,
    RegistrationSettings,
    majority_vote,
    propagate_all,
    weighted_vote,
)


def model_space_cases(dataset: Path, spacing: float) -> tuple[list[Case], int]:
    manifest = json.loads((dataset / "dataset.json").read_text())
    labels = {int(k): v for k, v in manifest["labels"].items()}
    spec = ModelSpec(labels=labels, spacing=(spacing,) * 3)
    cases = []
    for entry in manifest["cases"]["pool"]:
        case = preprocess_case(
            read_volume(dataset / entry["image"]), spec, read_volume(dataset / entry["label"])
        )
        cases.append(
            Case(
                image=case.image[0].numpy(),
                spacing=(spacing,) * 3,
                labels=np.rint(case.label[0].numpy()).astype(np.int64),
                case_id=entry["name"],
            )
        )
    return cases, len(labels)


def dice(labels: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    return mean_of(dice_per_class(labels, reference, num_classes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--queries", type=int, default=4, help="the last N pool cases are the queries")
    parser.add_argument("--supports", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--deformable", default="bspline", choices=[s.value for s in DeformableStage])
    parser.add_argument("--bspline-iterations", type=int, default=RegistrationSettings.bspline_iterations)
    args = parser.parse_args()
    cases, num_classes = model_space_cases(args.dataset, args.spacing)
    settings = RegistrationSettings(
        deformable=DeformableStage(args.deformable), bspline_iterations=args.bspline_iterations
    )
    queries, pool = cases[-args.queries :], cases[: -args.queries]
    largest = max(args.supports)
    results = {k: {"none": [], "majority": [], "weighted": []} for k in args.supports}
    seconds = []
    for query in queries:
        started = time.perf_counter()
        warped = propagate_all(query, pool[:largest], num_classes, settings)
        seconds += [w.seconds for w in warped]
        order = {w.case_id: w for w in warped}
        identity = (
            dice(pool[0].labels, query.labels, num_classes)
            if pool[0].image.shape == query.image.shape
            else float("nan")
        )
        for k in args.supports:
            chosen = [order[c.case_id] for c in pool[:k]]
            results[k]["none"].append(identity)
            results[k]["majority"].append(dice(majority_vote(chosen).labels, query.labels, num_classes))
            results[k]["weighted"].append(
                dice(weighted_vote(query, chosen).labels, query.labels, num_classes)
            )
        print(
            f"{query.case_id}: {time.perf_counter() - started:.1f} s, "
            + ", ".join(
                f"k={k} {results[k]['majority'][-1]:.3f}/{results[k]['weighted'][-1]:.3f}"
                for k in args.supports
            ),
            flush=True,
        )
    print(
        f"seconds a registration ({settings.deformable.value}): mean {np.mean(seconds):.2f}, "
        f"max {np.max(seconds):.2f} over {len(seconds)}"
    )
    for k in args.supports:
        print(
            f"{k} support(s): majority {np.nanmean(results[k]['majority']):.3f}, "
            f"weighted {np.nanmean(results[k]['weighted']):.3f} "
            f"(mean foreground Dice over {len(queries)} queries)"
        )


if __name__ == "__main__":
    main()
