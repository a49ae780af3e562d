"""The guard: which weights a round ends with, and whether they replace the parent.

The round validates on labelled cases that neither it nor any earlier round trained on (chosen in
``session/rounds.py``). Its candidates are the parent's weights (step 0, measured before training) and the
averaged weights at every validation step. The best trained candidate is the round's version; it replaces
the parent unless it validates more than ``tolerance`` mean Dice below it, so the parent wins only on clear
evidence of harm, and a difference that 1 to 3 cases cannot resolve goes to the round that learnt from the
newest correction. Without a held-out case there is nothing to compare: the round is activated and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum


class ValidationSignal(str, Enum):
    """What the guard compared the round with its parent on."""

    HELD_OUT = "held-out"  # labelled cases no round has trained on
    NONE = "none"  # every labelled case has been trained on: the round is not validated
    # the training cases themselves: the Dice a round without held-out cases reports (never compared with
    # the parent), and the signal of rounds recorded before the held-out set
    FIT = "fit"


@dataclass
class GuardDecision:
    accepted: bool  # the new version becomes the active one
    parent_dice: float | None
    dice: float | None
    validation: str  # a ValidationSignal value
    reason: str
    cases: list[str] = field(default_factory=list)  # the held-out cases validated on
    tolerance: float = 0.0
    best_step: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def best_candidate(scores: dict[int, float]) -> tuple[int, float] | None:
    """(step, Dice) of the best validated step; a tie goes to the later step (more training on the newest
    labels, a longer average). None when no step was validated."""
    finite = {step: dice for step, dice in scores.items() if dice is not None and math.isfinite(dice)}
    if not finite:
        return None
    step = max(finite, key=lambda s: (finite[s], s))
    return step, finite[step]


def guard_decision(
    parent_dice: float | None,
    dice: float | None,
    validation: str,
    accept_worse: bool = False,
    tolerance: float = 0.0,
    cases: list[str] | None = None,
    best_step: int | None = None,
) -> GuardDecision:
    """Keep the parent only when the round's best validated Dice is more than ``tolerance`` below it."""
    cases = list(cases or [])
    decision = GuardDecision(True, parent_dice, dice, str(validation), "", cases, tolerance, best_step)
    known = [d for d in (parent_dice, dice) if d is not None and math.isfinite(d)]
    if len(known) < 2:
        decision.reason = "no held-out labelled case yet (every labelled case trains): activated unvalidated"
        return decision
    on = f"{validation} Dice" + (f" on {', '.join(cases)}" if cases else "")
    if dice >= parent_dice - tolerance:
        relation = ">=" if dice >= parent_dice else f"within {tolerance:g} of"
        decision.reason = f"{on}: {dice:.4f} {relation} the parent's {parent_dice:.4f}"
        return decision
    if accept_worse:
        decision.reason = (
            f"{on}: {dice:.4f} < the parent's {parent_dice:.4f}, activated as accept_worse is set"
        )
        return decision
    decision.accepted = False
    decision.reason = (
        f"{on}: {dice:.4f} < the parent's {parent_dice:.4f} by more than {tolerance:g}: the parent stays "
        "active (the version is kept and can be activated by hand; accept_worse activates such rounds)"
    )
    return decision
