"""The training noise: how far test Dice moves when only the fine-tuning seed changes.

For each size n of ``--training-noise``, one labelled set of n pool cases is drawn once (the first n of one
permutation of the pool, seeded by ``TRAINING_NOISE_SEED``: the sets are nested and the same for every
benchmark of the same pool), and the full method's fine-tuning trains one round on it from the source
model for each of ``--seeds``. The spread of test Dice over those seeds is noise that no choice of cases
can explain; a difference between queries smaller than it is not seen. Each (set, seed) is a run saved as
``OUT/training_noise/training-noise-<n>-seed<k>.json`` (resumed like the others).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ASFDAError
from ..analysis.significance import sd_interval
from .arms import FULL_METHOD, Arm
from .results import RunResult

if TYPE_CHECKING:
    from .execution import Job

TRAINING_NOISE_SEED = 0
FOLDER = "training_noise"
TARGET_SD_POINTS = 0.5  # issue 18: the sd over seeds of one fixed labelled set, in Dice points


def fixed_sets(
    pool: Sequence[str], sizes: Iterable[int], seed: int = TRAINING_NOISE_SEED
) -> dict[int, tuple]:
    """One labelled set per size: the first n cases of one seeded permutation of the (sorted) pool."""
    sizes = sorted(set(sizes))
    if sizes and (sizes[0] < 1 or sizes[-1] > len(pool)):
        raise ASFDAError(f"--training-noise sizes must be 1 to {len(pool)} (the pool), got {sizes}")
    order = [str(name) for name in np.random.default_rng(seed).permutation(sorted(pool))]
    return {n: tuple(sorted(order[:n])) for n in sizes}


def noise_arm(arm: Arm, n: int) -> Arm:
    return Arm(
        f"training-noise-{n}",
        arm.strategy,
        arm.semi_supervised,
        f"{n} fixed labelled cases, one round of {arm.name}'s fine-tuning",
        arm.finetune_overrides,
    )


def noise_jobs(headline: Sequence[Job], sets: dict[int, tuple], out: Path, work: Path) -> list[Job]:
    """A job per (set, seed) from the headline arm's job of that seed: its fine-tuning, one round on it."""
    jobs = []
    for n, cases in sets.items():
        for job in headline:
            arm = noise_arm(job.arm, n)
            name = f"{arm.name}-seed{job.seed}"
            jobs.append(
                replace(
                    job,
                    arm=arm,
                    schedule=(n,),
                    session=work / name,
                    result=Path(out) / FOLDER / f"{name}.json",
                    log=work / f"{name}.log",
                    keep_model=None,
                    fixed_labelled=tuple(cases),
                )
            )
    return jobs


def load_noise_runs(
    out: Path, sizes: Iterable[int] | None = None, seeds: Iterable[int] | None = None
) -> list[RunResult]:
    """The saved training-noise runs (of ``sizes`` and ``seeds`` when given)."""
    runs = [
        RunResult.from_json(json.loads(p.read_text())) for p in sorted((Path(out) / FOLDER).glob("*.json"))
    ]
    sizes = None if sizes is None else set(sizes)
    seeds = None if seeds is None else set(seeds)
    return [
        r
        for r in runs
        if r.records
        and (sizes is None or r.records[-1].n_labelled in sizes)
        and (seeds is None or r.seed in seeds)
    ]


def training_noise_summary(runs: Sequence[RunResult], recipe: str = FULL_METHOD) -> dict | None:
    """summary.json's ``training_noise``: per set size its cases, the mean test Dice, the sd over seeds in
    Dice points with its 95 % interval, the number of seeds and every seed's Dice; ``recipe``: the arm whose
    fine-tuning trained them (the full method's unless ``--training-noise-recipe`` said otherwise)."""
    by_size: dict[int, list[RunResult]] = {}
    for run in runs:
        if run.records and run.records[-1].test_dice is not None:
            by_size.setdefault(run.records[-1].n_labelled, []).append(run)
    if not by_size:
        return None
    sets = {}
    for n, own in sorted(by_size.items()):
        own = sorted(own, key=lambda r: r.seed)
        dice = np.array([r.records[-1].test_dice for r in own], dtype=np.float64)
        sd = float(100 * np.std(dice, ddof=1)) if len(dice) > 1 else None
        sd_ci = list(sd_interval(100 * dice)) if len(dice) > 1 else None
        sets[str(n)] = {
            "cases": list(own[0].records[-1].picked),
            "dice_mean": float(dice.mean()),
            "sd_points": sd,
            "sd_ci_points": sd_ci,  # 95 %, chi-square: 8 seeds pin an sd down to about 0.66x-2.0x
            "range_points": float(100 * (dice.max() - dice.min())),
            "n_seeds": len(own),
            "per_seed": {str(r.seed): float(r.records[-1].test_dice) for r in own},
            "held_back": sum(not r.records[-1].activated for r in own),
            "met": None if sd is None else bool(sd <= TARGET_SD_POINTS),
        }
    return {
        "how": (
            "one labelled set per size (the first n of a permutation of the pool seeded "
            f"{TRAINING_NOISE_SEED}), one round of {recipe}'s fine-tuning from the source model "
            "per training seed"
        ),
        "recipe": recipe,
        "target_sd_points": TARGET_SD_POINTS,
        "sets": sets,
    }


def training_noise_markdown(summary: dict | None) -> list[str]:
    if not summary:
        return []
    parts = []
    for n, s in summary["sets"].items():
        sd = "n/a" if s["sd_points"] is None else f"{s['sd_points']:.2f}"
        if s.get("sd_ci_points"):  # summaries written before the interval have none
            sd += " [{:.2f}, {:.2f}]".format(*s["sd_ci_points"])
        held = f", {s['held_back']} held back by the guard" if s["held_back"] else ""
        parts.append(
            f"{n} cases ({', '.join(s['cases'])}): {s['dice_mean']:.4f}, sd {sd} points, range "
            f"{s['range_points']:.2f} points over {s['n_seeds']} seeds{held}"
        )
    target = summary["target_sd_points"]
    return ["", f"Training noise ({summary['how']}; target sd <= {target} points): " + "; ".join(parts) + "."]
