"""How the guard's decisions fared on held-out test Dice, over every round of every run.

A round's *candidate* is the version it trained; its *parent* the version active before it. The guard keeps
the candidate (it becomes active) or holds it back (the parent stays active). Against the test split:

- a kept round that lowered test Dice is a false acceptance;
- a held-back round whose candidate would have raised test Dice is a false rejection.

With ``accept_worse`` every round is kept, and what validation said (the guard's own rule: the candidate's
validation Dice at least its parent's) is still recorded, so the same tally says what the guard would have
done. Runs saved before rounds recorded the guard count with the signal "not recorded": a kept round's
candidate is then the active model, whose test Dice the round has; a held-back one's is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..running.results import SOURCE_ONLY, RunResult

NOT_RECORDED = "not recorded"


@dataclass
class GuardedRound:
    arm: str
    seed: int
    round: int
    kept: bool
    signal: str
    validated_better: bool | None  # None: validation could not compare the two (or was not recorded)
    candidate_test_dice: float | None
    parent_test_dice: float | None

    @property
    def change(self) -> float | None:
        """The candidate's test Dice minus its parent's."""
        if self.candidate_test_dice is None or self.parent_test_dice is None:
            return None
        return self.candidate_test_dice - self.parent_test_dice


def source_dice(results: Iterable[RunResult]) -> float | None:
    """The source model's test Dice (every run's round 0 is that model, evaluated once in source-only)."""
    run = next((r for r in results if r.arm == SOURCE_ONLY and r.records), None)
    return None if run is None else run.records[0].test_dice


def guarded_rounds(results: Sequence[RunResult], source: float | None = None) -> list[GuardedRound]:
    """Every fine-tuning round of every run (source-only has none), with its parent's test Dice: the active
    model's after the previous round, and ``source`` (the source model's) where round 0 was not evaluated."""
    rounds = []
    for run in results:
        if run.arm == SOURCE_ONLY:
            continue
        for previous, record in zip(run.records, run.records[1:]):
            parent = previous.test_dice
            if parent is None and previous.round == 0:
                parent = source
            guard = record.guard
            if guard is None:  # saved before rounds recorded the guard
                candidate = record.test_dice if record.activated else None
                rounds.append(
                    GuardedRound(
                        run.arm,
                        run.seed,
                        record.round,
                        record.activated,
                        NOT_RECORDED,
                        None,
                        candidate,
                        parent,
                    )
                )
                continue
            rounds.append(
                GuardedRound(
                    run.arm,
                    run.seed,
                    record.round,
                    guard.accepted,
                    guard.signal or NOT_RECORDED,
                    guard.validated_better,
                    guard.candidate_test_dice,
                    guard.parent_test_dice if guard.parent_test_dice is not None else parent,
                )
            )
    return rounds


def tally(rounds: Sequence[GuardedRound]) -> dict:
    """How many rounds raised, lowered or kept the test Dice, and the mean change (Dice points)."""
    changes = [r.change for r in rounds if r.change is not None]
    return {
        "n": len(rounds),
        "raised": sum(c > 0 for c in changes),
        "lowered": sum(c < 0 for c in changes),
        "unchanged": sum(c == 0 for c in changes),
        "unknown": len(rounds) - len(changes),
        "mean_change_points": float(100 * np.mean(changes)) if changes else None,
    }


def guard_summary(rounds: Sequence[GuardedRound], accept_worse: bool | None = None) -> dict | None:
    """summary.json's ``guard``: rounds kept and held back, how each moved the test Dice, the signals."""
    if not rounds:
        return None
    kept = [r for r in rounds if r.kept]
    held_back = [r for r in rounds if not r.kept]
    kept_tally, held_tally = tally(kept), tally(held_back)
    by_arm = {}
    for arm in dict.fromkeys(r.arm for r in rounds):
        own = [r for r in rounds if r.arm == arm]
        by_arm[arm] = {
            "kept": tally([r for r in own if r.kept]),
            "held_back": tally([r for r in own if not r.kept]),
        }
    return {
        "rule": "kept: the round's version became active; raised/lowered: its test Dice against its parent's",
        "accept_worse": accept_worse,
        "signals": dict(Counter(r.signal for r in rounds)),
        "rounds": len(rounds),
        "kept": kept_tally,
        "held_back": held_tally,
        "false_acceptances": kept_tally["lowered"],
        "false_rejections": held_tally["raised"],
        "validation_said_better": tally([r for r in rounds if r.validated_better is True]),
        "validation_said_worse": tally([r for r in rounds if r.validated_better is False]),
        "by_arm": by_arm,
    }


def guard_markdown(summary: dict | None) -> list[str]:
    if not summary:
        return []
    kept, held = summary["kept"], summary["held_back"]
    better, worse = summary["validation_said_better"], summary["validation_said_worse"]
    signals = ", ".join(f"{name} {count}" for name, count in summary["signals"].items())
    text = (
        f"Guard ({summary['rounds']} fine-tuning rounds; validation signal: {signals}"
        + ("; accept_worse: every round kept" if summary.get("accept_worse") else "")
        + f"): kept {kept['n']}, of which {kept['raised']} raised and {kept['lowered']} lowered test Dice "
        f"(false acceptances); held back {held['n']}, of which {held['raised']} would have raised it "
        f"(false rejections) and {held['lowered']} would have lowered it."
    )
    if better["n"] or worse["n"]:
        text += (
            f" Validation favoured the round {better['n']} times (test Dice raised {better['raised']}, "
            f"lowered {better['lowered']}) and its parent {worse['n']} times (raised {worse['raised']}, "
            f"lowered {worse['lowered']})."
        )
    unknown = kept["unknown"] + held["unknown"]
    if unknown:
        text += f" {unknown} rounds lack a test Dice to compare."
    return ["", text]
