"""The guard: a round that validates worse than its parent does not replace it unless the user says so."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class GuardDecision:
    accepted: bool  # the new version becomes the active one
    parent_dice: float | None
    dice: float | None
    validation: str  # "held-out" (a labelled case kept out of training) or "fit" (the training cases)
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def guard_decision(
    parent_dice: float | None, dice: float | None, validation: str, accept_worse: bool = False
) -> GuardDecision:
    """Accept when the round's validation Dice is at least its parent's (or cannot be compared)."""
    known = [d for d in (parent_dice, dice) if d is not None and math.isfinite(d)]
    if len(known) < 2:
        return GuardDecision(True, parent_dice, dice, validation, "no validation Dice to compare")
    if dice >= parent_dice:
        return GuardDecision(
            True, parent_dice, dice, validation, f"{validation} Dice {dice:.4f} >= parent's {parent_dice:.4f}"
        )
    if accept_worse:
        return GuardDecision(
            True,
            parent_dice,
            dice,
            validation,
            f"{validation} Dice {dice:.4f} < parent's {parent_dice:.4f}, activated as accept_worse is set",
        )
    return GuardDecision(
        False,
        parent_dice,
        dice,
        validation,
        f"{validation} Dice {dice:.4f} < parent's {parent_dice:.4f}: the parent stays active "
        "(accept_worse activates such a round)",
    )
