"""Per-class summaries of a held-out evaluation."""

from __future__ import annotations

import math

from asfda.evaluation import CaseEvaluation, Evaluation


def test_per_class_hd95_averages_each_class_over_the_cases_that_hold_it():
    evaluation = Evaluation(
        [
            CaseEvaluation("a", {1: 0.8, 2: 0.0}, {1: 4.0}),  # class 2 not predicted: no HD95
            CaseEvaluation("b", {1: 0.6, 2: 0.5}, {1: 6.0, 2: 40.0}),
        ]
    )
    assert evaluation.per_class_hd95() == {1: 5.0, 2: 40.0}
    # the case mean counts only the classes each case holds, so a newly predicted class moves it
    assert evaluation.mean_hd95 == (4.0 + 23.0) / 2
    assert Evaluation().per_class_hd95() == {}


def test_per_class_hd95_leaves_out_distances_that_are_not_finite():
    evaluation = Evaluation(
        [CaseEvaluation("a", {1: 0.1}, {1: math.inf}), CaseEvaluation("b", {1: 0.2}, {1: 3.0})]
    )
    assert evaluation.per_class_hd95() == {1: 3.0}
