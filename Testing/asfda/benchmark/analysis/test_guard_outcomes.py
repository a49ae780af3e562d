"""The guard's record on hand-made rounds: kept or held back, against the test Dice of candidate and
parent."""

import pytest
from asfda.benchmark.analysis.guard_outcomes import (
    NOT_RECORDED,
    guard_markdown,
    guard_summary,
    guarded_rounds,
    source_dice,
)
from asfda.benchmark.running.results import SOURCE_ONLY, RunResult
from asfda.loop import RoundRecord
from asfda.loop_records import GuardOutcome


def record(number, dice, guard=None, activated=True):
    return RoundRecord(
        number,
        number,
        [f"tgt_{number:03d}"],
        f"v{number}",
        dice,
        None,
        None,
        0.0,
        0.0,
        activated=activated,
        guard=guard,
    )


def outcome(accepted, val, parent_val, candidate, parent=None):
    return GuardOutcome(accepted, "held-out", val, parent_val, candidate, parent, ["tgt_001"], "test")


def runs():
    source = RunResult(SOURCE_ONLY, 0, "none", [record(0, 0.30)])
    guarded = RunResult(
        "asfda",
        0,
        "supervised",
        [
            record(0, None),
            record(1, 0.40, outcome(True, 0.8, 0.7, 0.40)),  # kept, raised (parent: the source, 0.30)
            record(2, 0.40, outcome(False, 0.6, 0.8, 0.45, 0.40), activated=False),  # false rejection
            record(3, 0.35, outcome(True, 0.9, 0.8, 0.35, 0.40)),  # false acceptance
            record(4, 0.35, outcome(False, 0.5, 0.9, 0.30, 0.35), activated=False),  # rightly held back
        ],
    )
    # saved before rounds recorded the guard: every round kept (accept_worse), parent = previous round
    legacy = RunResult("random", 0, "supervised", [record(0, None), record(1, 0.50), record(2, 0.45)])
    return [source, guarded, legacy]


def test_rounds_take_the_parent_from_the_previous_round_or_the_source_model():
    rounds = guarded_rounds(runs(), source_dice(runs()))
    assert source_dice(runs()) == 0.30 and len(rounds) == 6  # source-only has no fine-tuning round
    first = rounds[0]
    assert (first.arm, first.round, first.parent_test_dice, first.change) == (
        "asfda",
        1,
        0.30,
        pytest.approx(0.10),
    )
    legacy = [r for r in rounds if r.arm == "random"]
    assert [r.signal for r in legacy] == [NOT_RECORDED] * 2 and all(r.kept for r in legacy)
    assert [r.change for r in legacy] == [pytest.approx(0.20), pytest.approx(-0.05)]
    assert guarded_rounds(runs())[0].change is None  # without the source model's Dice, round 1 has no parent


def test_summary_counts_false_acceptances_and_false_rejections():
    summary = guard_summary(guarded_rounds(runs(), 0.30), accept_worse=False)
    assert summary["rounds"] == 6 and summary["signals"] == {"held-out": 4, NOT_RECORDED: 2}
    assert summary["kept"] | {"mean_change_points": None} == {
        "n": 4,
        "raised": 2,
        "lowered": 2,
        "unchanged": 0,
        "unknown": 0,
        "mean_change_points": None,
    }
    assert summary["kept"]["mean_change_points"] == pytest.approx(100 * (0.10 - 0.05 + 0.20 - 0.05) / 4)
    assert (summary["held_back"]["n"], summary["held_back"]["raised"], summary["held_back"]["lowered"]) == (
        2,
        1,
        1,
    )
    assert summary["false_acceptances"] == 2 and summary["false_rejections"] == 1
    # what validation said, whatever was done: better twice (raised once, lowered once), worse twice
    assert (summary["validation_said_better"]["raised"], summary["validation_said_better"]["lowered"]) == (
        1,
        1,
    )
    assert (summary["validation_said_worse"]["raised"], summary["validation_said_worse"]["lowered"]) == (1, 1)
    assert summary["by_arm"]["random"]["held_back"]["n"] == 0
    text = "".join(guard_markdown(summary))
    assert (
        "kept 4, of which 2 raised and 2 lowered" in text
        and "held back 2, of which 1 would have raised" in text
    )
    assert guard_summary([]) is None and guard_markdown(None) == []


def test_a_round_without_a_test_dice_counts_as_unknown():
    run = RunResult(
        "asfda", 0, "supervised", [record(0, None), record(1, 0.4, outcome(False, 0.1, 0.2, None))]
    )
    summary = guard_summary(guarded_rounds([run]))  # no source-only: round 1's parent is unknown
    assert summary["held_back"]["unknown"] == 1 and summary["false_rejections"] == 0
