"""The fine-tuning settings a user may change for a session or a round, as command-line flags (the HTTP API
takes the same names in ``FinetuneRequest``)."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import AdaptationMode, FinetuneConfig


def add_finetune_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for every FinetuneConfig setting a user is expected to tune; absent flags change nothing."""
    group = parser.add_argument_group("fine-tuning")
    defaults = FinetuneConfig()
    group.add_argument(
        "--steps-per-labelled",
        type=int,
        help=f"steps added per labelled case (default {defaults.steps_per_labelled}; --steps alone sets 0)",
    )
    group.add_argument("--learning-rate", type=float, help=f"default {defaults.learning_rate}")
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
        help="validate on labelled cases no round trained on (with >= 2 labelled cases)",
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
        "steps_per_labelled",
    )
    changes = round_steps_given(
        {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    )
    if "patch_size" in changes:
        changes["patch_size"] = tuple(changes["patch_size"])
    if "adaptation" in changes:
        changes["adaptation"] = AdaptationMode(changes["adaptation"])
    return dataclasses.replace(config, **changes)


def round_steps_given(changes: dict) -> dict:
    """``changes`` where a round's ``steps`` given alone mean exactly that many steps (no steps per labelled
    case); with ``steps_per_labelled`` given too, the rule steps + steps_per_labelled x labelled applies."""
    if "steps" in changes and "steps_per_labelled" not in changes:
        return {**changes, "steps_per_labelled": 0}
    return changes
