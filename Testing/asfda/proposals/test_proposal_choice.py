"""The leave-one-out choice: propagation is served when it validates better than the model, the model when it
validates better, and the model, unvalidated, with one labelled case."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.proposals import (
    Case,
    DeformableStage,
    ProposalKind,
    RegistrationSettings,
    choose_proposal,
    foreground_dice,
    propose,
)
from proposal_phantoms import BLOBS, NUM_CLASSES, moved, phantom

FAST = RegistrationSettings(deformable=DeformableStage.NONE, affine_samples=4000)


def related_cases() -> list[Case]:
    """One anatomy seen three times, moved a little each time (as a session's patients are alike)."""
    base = phantom(seed=1)
    return [
        moved(base, 0.0, (0.0, 0.0, 0.0), "a"),
        moved(base, 8.0, (4.0, -2.0, 0.0), "b"),
        moved(base, -6.0, (-2.0, 4.0, 2.0), "c"),
    ]


def unrelated_cases() -> list[Case]:
    """Three anatomies with the small structures elsewhere each time: no support can tell another's."""
    layouts = [
        BLOBS,
        (BLOBS[0], ((20, 20, 12), (4, 3, 5), 2), ((11, 12, 20), (3, 5, 3), 3)),
        (BLOBS[0], ((16, 22, 20), (4, 3, 5), 2), ((16, 10, 11), (3, 5, 3), 3)),
    ]
    return [Case(**{**vars(phantom(seed=i, blobs=b)), "case_id": f"u{i}"}) for i, b in enumerate(layouts)]


def shifted(labels: np.ndarray) -> np.ndarray:
    """A poor model: the right classes, 6 voxels off."""
    return np.roll(labels, 6, axis=0)


def noisy(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A good model: 3 % of the voxels wrong."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(labels.shape) < 0.03
    return np.where(wrong, rng.integers(0, NUM_CLASSES, labels.shape), labels)


def test_propagation_is_served_when_the_model_is_poor():
    cases = related_cases()
    predictions = [shifted(case.labels) for case in cases]

    choice = choose_proposal(cases, predictions, NUM_CLASSES, settings=FAST)

    assert choice.served is not ProposalKind.MODEL
    assert choice.dice[choice.served] > 0.85 > 0.6 > choice.dice[ProposalKind.MODEL]
    assert len(choice.per_case[ProposalKind.MODEL]) == 3
    assert choice.summary().startswith("starting from: ")
    assert "from 3 cases" in choice.summary() and f"{choice.dice[ProposalKind.MODEL]:.2f}" in choice.summary()


def test_the_model_is_served_when_propagation_is_poor():
    cases = unrelated_cases()
    predictions = [noisy(case.labels, seed=i) for i, case in enumerate(cases)]

    choice = choose_proposal(cases, predictions, NUM_CLASSES, settings=FAST)

    assert choice.served is ProposalKind.MODEL
    propagation = max(choice.dice[k] for k in (ProposalKind.MAJORITY, ProposalKind.WEIGHTED))
    assert choice.dice[ProposalKind.MODEL] > propagation + 0.1
    assert choice.summary().startswith("starting from: the model's prediction, validated Dice")


def test_one_labelled_case_serves_the_model_and_says_why():
    case = related_cases()[0]
    choice = choose_proposal([case], [shifted(case.labels)], NUM_CLASSES, settings=FAST)

    assert choice.served is ProposalKind.MODEL and not choice.validated and choice.labelled_cases == 1
    assert "no leave-one-out" in choice.reason
    assert choice.summary() == "starting from: the model's prediction (1 labelled case: no leave-one-out yet)"
    alone = choose_proposal(related_cases()[:2], [c.labels for c in related_cases()[:2]], NUM_CLASSES, ())
    assert alone.served is ProposalKind.MODEL and alone.summary().endswith("validated Dice 1.00")


def test_one_labelled_case_serves_the_one_case_rule_and_none_serves_the_model():
    case = related_cases()[0]
    rule = ProposalKind.WEIGHTED
    choice = choose_proposal([case], [shifted(case.labels)], NUM_CLASSES, settings=FAST, single_case=rule)

    assert choice.served is rule and not choice.validated
    assert choice.summary() == (
        "starting from: propagation from 1 case (locally weighted) (1 labelled case: no leave-one-out yet; "
        "the one-case rule chosen on a validation split)"
    )
    assert choose_proposal([], [], NUM_CLASSES, single_case=rule).served is ProposalKind.MODEL
    two = related_cases()[:2]
    assert choose_proposal(two, [c.labels for c in two], NUM_CLASSES, (), single_case=rule).validated


def test_the_chosen_proposal_is_built_for_a_new_case():
    cases = related_cases()
    query = Case(cases[0].image, cases[0].spacing, case_id="new")
    poor = shifted(cases[0].labels)

    proposal = propose(ProposalKind.WEIGHTED, query, cases[1:], poor, NUM_CLASSES, FAST)
    model = propose(ProposalKind.MODEL, query, cases[1:], poor, NUM_CLASSES, FAST)

    assert proposal.supports == ("b", "c") or proposal.supports == ("c", "b")
    assert foreground_dice(proposal.labels, cases[0].labels, NUM_CLASSES) > 0.85
    np.testing.assert_array_equal(model.labels, poor)


def test_mismatched_inputs_are_refused():
    cases = related_cases()
    with pytest.raises(ValueError, match="3 labelled cases but 2 predictions"):
        choose_proposal(cases, [c.labels for c in cases[:2]], NUM_CLASSES)
    with pytest.raises(ValueError, match="not on the mask's grid"):
        choose_proposal(cases[:2], [cases[0].labels, cases[1].labels[:8]], NUM_CLASSES)
    with pytest.raises(ValueError, match="no saved mask"):
        choose_proposal([Case(cases[0].image, cases[0].spacing)], [cases[0].labels], NUM_CLASSES)
