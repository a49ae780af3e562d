"""The fine-tuning settings a user may change for a session or a round, as command-line flags (the HTTP API
takes the same names in ``FinetuneRequest``)."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import AdaptationMode, FinetuneConfig


def add_finetune_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for every FinetuneConfig setting a user is expected to tune; absent flags change nothing."""
    group = parser.add_argument_group("fine-tuning")
    group.add_argument("--learning-rate", type=float, help=f"default {FinetuneConfig().learning_rate}")
    group.add_argument("--warmup-fraction", type=float, help="share of the steps with a rising learning rate")
    group.add_argument("--patch-size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="default: the window")
    group.add_argument("--batch-size", type=int)
    group.add_argument(
        "--adaptation",
        choices=[mode.value for mode in AdaptationMode],
        help="which weights change: all, normalisation layers only, or the decoder only (frozen encoder)",
    )
    group.add_argument(
        "--semi-supervised",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also learn from reliable unlabelled cases (pseudo-labels)",
    )
    group.add_argument(
        "--accept-worse",
        action="store_true",
        default=None,
        help="activate a round even when it validates worse than its parent",
    )
    group.add_argument(
        "--hold-out",
        dest="hold_out_validation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="validate on a labelled case kept out of training (with >= 2 labelled cases)",
    )


def apply_finetune_flags(config: FinetuneConfig, args: argparse.Namespace) -> FinetuneConfig:
    """``config`` with the flags that were given."""
    names = (
        "learning_rate",
        "warmup_fraction",
        "patch_size",
        "batch_size",
        "adaptation",
        "semi_supervised",
        "accept_worse",
        "hold_out_validation",
        "steps",
    )
    changes = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if "patch_size" in changes:
        changes["patch_size"] = tuple(changes["patch_size"])
    if "adaptation" in changes:
        changes["adaptation"] = AdaptationMode(changes["adaptation"])
    return dataclasses.replace(config, **changes)
