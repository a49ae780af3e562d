"""The guard's rule: the parent stays only on clear evidence of harm; ties go to the later step."""

import math

from asfda.finetune.guard import best_candidate, guard_decision


def test_a_worse_round_is_not_activated_unless_asked():
    decision = guard_decision(0.90, 0.85, "held-out", cases=["t2_3"])
    assert not decision.accepted and "0.8500 < the parent's 0.9000" in decision.reason
    assert "t2_3" in decision.reason and "accept_worse" in decision.reason
    assert guard_decision(0.90, 0.85, "held-out", accept_worse=True).accepted
    assert guard_decision(0.85, 0.85, "held-out").accepted and guard_decision(0.8, 0.9, "held-out").accepted


def test_without_two_validation_scores_the_round_is_activated_and_says_so():
    for parent, dice in ((None, None), (None, 0.9), (float("nan"), 0.9)):
        decision = guard_decision(parent, dice, "none")
        assert decision.accepted and "unvalidated" in decision.reason


def test_a_margin_within_the_tolerance_goes_to_the_round():
    # deepbet's round 2 was refused on 0.9072 against 0.9074: within 0.002 the newest correction wins
    within = guard_decision(0.9074, 0.9072, "held-out", tolerance=0.002, cases=["a", "b"], best_step=40)
    assert within.accepted and "within 0.002" in within.reason
    assert within.to_json()["cases"] == ["a", "b"] and within.to_json()["best_step"] == 40
    beyond = guard_decision(0.9074, 0.9050, "held-out", tolerance=0.002)
    assert not beyond.accepted and "by more than 0.002" in beyond.reason


def test_the_best_validated_step_wins_and_a_tie_goes_to_the_later_step():
    assert best_candidate({20: 0.80, 40: 0.85, 60: 0.83}) == (40, 0.85)
    assert best_candidate({20: 0.85, 40: 0.85}) == (40, 0.85)
    assert best_candidate({20: float("nan"), 40: 0.5}) == (40, 0.5)
    assert best_candidate({}) is None and best_candidate({20: math.nan}) is None
