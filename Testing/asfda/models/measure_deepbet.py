"""Held-out Dice of deepbet before and after one supervised round, old defaults against new.

Not a test (too slow for the suite): run it by hand, e.g.
    PYTHONPATH=ASFDAModule python Testing/asfda/models/measure_deepbet.py --spacing 1.5 --seeds 1 2 3
Each seed draws its own labelled and held-out cases (paired across the arms).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from asfda.config import AdaptationMode, FinetuneConfig  # noqa: E402
from asfda.evaluation import evaluate_model, paired_files  # noqa: E402
from asfda.session.session import AdaptationSession  # noqa: E402
from deepbet_cases import write_cases, write_deepbet_folder  # noqa: E402

ARMS = {
    "old: lr 1e-3, no warm-up, no guard": dict(
        learning_rate=1e-3, warmup_fraction=0.0, hold_out_validation=False, accept_worse=True
    ),
    "new defaults (lr 1e-4, warm-up, held-out guard)": {},
    "decoder-only, lr 1e-4, no guard": dict(adaptation=AdaptationMode.DECODER, accept_worse=True),
}  # norm-only does not apply: deepbet's InstanceNorm layers have no affine weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--roi", type=int, default=128)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
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
                for arm, overrides in ARMS.items():
                    session = AdaptationSession.create(tmp / f"s_{contrast}{seed}_{len(rows)}", model, "cpu")
                    if before is None:
                        before = evaluate_model(session.model(), pairs, session.device).mean_dice
                    for record in session.add_folder(pool[0]):
                        session.submit_label(record.id, pool[1] / Path(record.source_path).name)
                    config = FinetuneConfig(
                        steps=args.steps,
                        steps_per_labelled=0,
                        patch_size=(args.patch,) * 3,
                        semi_supervised=False,
                        seed=seed,
                        **overrides,
                    )
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
                        "val": version.metrics["val_dice"],
                        "parent_val": version.metrics["parent_val_dice"],
                        "seconds": time.perf_counter() - started,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| contrast | arm | held-out Dice before | after | change (mean over seeds) | activated |")
    print("|---|---|---|---|---|---|")
    for contrast in args.contrasts:
        for arm in ARMS:
            sel = [r for r in rows if r["contrast"] == contrast and r["arm"] == arm]
            b, a = np.mean([r["before"] for r in sel]), np.mean([r["after"] for r in sel])
            accepted = sum(r["accepted"] for r in sel)
            print(f"| {contrast} | {arm} | {b:.3f} | {a:.3f} | {a - b:+.3f} | {accepted}/{len(sel)} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
