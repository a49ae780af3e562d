"""Held-out Dice of deepbet before and after one supervised round, for the benchmark's recipe arms.

Not a test (too slow for the suite): run it by hand, e.g.
    PYTHONPATH=ASFDAModule python Testing/asfda/models/measure_deepbet.py --spacing 1.5 --seeds 1 2 3 \
        --arms asfda recipe-2026-11
Each arm is the shipped recipe with that benchmark arm's overrides (`asfda` is the shipped recipe itself), at
the recipe's own steps unless ``--steps`` fixes them. Each seed draws its own labelled and held-out cases
(paired across the arms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from asfda.benchmark.running.arms import KNOWN_ARMS  # noqa: E402
from asfda.config import FinetuneConfig, round_steps  # noqa: E402
from asfda.evaluation import evaluate_model, paired_files  # noqa: E402
from asfda.session.session import AdaptationSession  # noqa: E402
from deepbet_cases import write_cases, write_deepbet_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--roi", type=int, default=128)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, help="every arm trains this many steps (default: its recipe's)")
    parser.add_argument("--arms", nargs="+", default=["asfda", "recipe-2026-11"], choices=sorted(KNOWN_ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--contrasts", nargs="+", default=["t1", "t2"])
    parser.add_argument("--labelled", type=int, default=2)
    parser.add_argument("--test", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_deepbet_folder(tmp / "deepbet", roi_size=(args.roi,) * 3)
        for contrast in args.contrasts:
            for seed in args.seeds:
                base = 100 * seed
                pool = write_cases(
                    tmp / f"{contrast}{seed}" / "pool",
                    contrast,
                    range(base + 1, base + 1 + args.labelled),
                    args.spacing,
                )
                test = write_cases(
                    tmp / f"{contrast}{seed}" / "test",
                    contrast,
                    range(base + 50, base + 50 + args.test),
                    args.spacing,
                )
                pairs = paired_files(*test)
                before = None
                for arm in args.arms:
                    session = AdaptationSession.create(tmp / f"s_{contrast}{seed}_{len(rows)}", model, "cpu")
                    if before is None:
                        before = evaluate_model(session.model(), pairs, session.device).mean_dice
                    for record in session.add_folder(pool[0]):
                        session.submit_label(record.id, pool[1] / Path(record.source_path).name)
                    config = FinetuneConfig(
                        patch_size=(args.patch,) * 3, seed=seed, **dict(KNOWN_ARMS[arm].finetune_overrides)
                    )
                    if args.steps is not None:
                        config = dataclasses.replace(config, steps=args.steps, steps_per_labelled=0)
                    started = time.perf_counter()
                    version = session.finetune(config)
                    after = evaluate_model(session.model(), pairs, session.device).mean_dice
                    row = {
                        "contrast": contrast,
                        "seed": seed,
                        "arm": arm,
                        "before": before,
                        "after": after,
                        "accepted": version.metrics["accepted"],
                        "val": version.metrics.get("val_dice"),
                        "parent_val": version.metrics.get("parent_val_dice"),
                        "steps": round_steps(config, args.labelled),
                        "seconds": time.perf_counter() - started,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| contrast | arm | held-out Dice before | after | change (mean over seeds) | activated |")
    print("|---|---|---|---|---|---|")
    for contrast in args.contrasts:
        for arm in args.arms:
            sel = [r for r in rows if r["contrast"] == contrast and r["arm"] == arm]
            b, a = np.mean([r["before"] for r in sel]), np.mean([r["after"] for r in sel])
            accepted = sum(r["accepted"] for r in sel)
            print(f"| {contrast} | {arm} | {b:.3f} | {a:.3f} | {a - b:+.3f} | {accepted}/{len(sel)} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
