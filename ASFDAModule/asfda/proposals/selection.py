"""Which proposal to serve, chosen on evidence: leave-one-out over the cases the radiologist has labelled.

Each labelled case is proposed from the other labelled cases (and a model's prediction of it) and scored by
mean foreground Dice against the radiologist's saved mask. The model's prediction is served unless a proposal
validates better; with one labelled case there is nothing to leave out, so a rule chosen beforehand on a
validation split decides (``single_case``; the model unless told otherwise). The prediction
of a labelled case should come from a model that never trained on it (the version it was corrected from):
the current model's would be its fit, which flatters the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics import dice_per_class, mean_of
from .fusion import Proposal, ProposalKind, agreement, majority_vote, model_proposal, weighted_vote
from .propagation import (
    CancelCheck,
    Case,
    ProgressCallback,
    RegistrationSettings,
    WarpedSupport,
    propagate_all,
)

CANDIDATES = (ProposalKind.MAJORITY, ProposalKind.WEIGHTED, ProposalKind.AGREEMENT)


@dataclass(frozen=True)
class ProposalChoice:
    """What the next case starts from, and the leave-one-out evidence for it."""

    served: ProposalKind
    labelled_cases: int
    dice: dict[ProposalKind, float] = field(default_factory=dict)  # mean over the left-out cases
    per_case: dict[ProposalKind, tuple[float, ...]] = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0

    @property
    def validated(self) -> bool:
        """Whether there was a leave-one-out at all (two labelled cases or more)."""
        return bool(self.dice)

    def summary(self) -> str:
        """One line for the module, e.g. 'starting from: propagation from 2 cases, validated Dice 0.71
        against the model's 0.48'."""
        if not self.validated:
            return f"starting from: {describe(self.served, self.labelled_cases)} ({self.reason})"
        model = self.dice[ProposalKind.MODEL]
        if self.served is ProposalKind.MODEL:
            best = max((k for k in self.dice if k is not ProposalKind.MODEL), key=self.dice.get, default=None)
            if best is None:
                return f"starting from: the model's prediction, validated Dice {model:.2f}"
            return (
                f"starting from: the model's prediction, validated Dice {model:.2f} against "
                f"{self.dice[best]:.2f} for {describe(best, self.labelled_cases)}"
            )
        return (
            f"starting from: {describe(self.served, self.labelled_cases)}, validated Dice "
            f"{self.dice[self.served]:.2f} against the model's {model:.2f}"
        )


def describe(kind: ProposalKind, cases: int) -> str:
    """A proposal's name in the radiologist's words."""
    source = f"{cases} case{'s' if cases != 1 else ''}"
    return {
        ProposalKind.MODEL: "the model's prediction",
        ProposalKind.MAJORITY: f"propagation from {source}",
        ProposalKind.WEIGHTED: f"propagation from {source} (locally weighted)",
        ProposalKind.AGREEMENT: f"the model with propagation from {source}",
    }[kind]


def unvalidated(labelled: int, single_case: ProposalKind = ProposalKind.MODEL) -> ProposalChoice:
    """The choice before a leave-one-out can be made: the model with no labelled case; with one, the kind
    a validation split chose for one case (``single_case``), there being no evidence in the session yet."""
    served = single_case if labelled == 1 else ProposalKind.MODEL
    reason = f"{labelled} labelled case{'s' if labelled != 1 else ''}: no leave-one-out yet"
    if served is not ProposalKind.MODEL:
        reason += "; the one-case rule chosen on a validation split"
    return ProposalChoice(served, labelled, reason=reason)


def proposal_from_warped(
    kind: ProposalKind,
    query: Case,
    warped: Sequence[WarpedSupport],
    prediction: np.ndarray,
    num_classes: int,
) -> Proposal:
    """One kind of proposal from supports already warped onto the query (registrations are shared)."""
    if kind is ProposalKind.MODEL:
        return model_proposal(prediction, num_classes)
    if kind is ProposalKind.MAJORITY:
        return majority_vote(warped)
    propagation = weighted_vote(query, warped)
    if kind is ProposalKind.WEIGHTED:
        return propagation
    return agreement(prediction, propagation, num_classes)


def propose(
    kind: ProposalKind,
    query: Case,
    labelled: Sequence[Case],
    prediction: np.ndarray,
    num_classes: int,
    settings: RegistrationSettings | None = None,
    max_supports: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> Proposal:
    """The proposal of ``kind`` for ``query`` from the labelled cases and the model's prediction of it."""
    if kind is ProposalKind.MODEL or not labelled:
        return model_proposal(prediction, num_classes)
    warped = propagate_all(query, labelled, num_classes, settings, max_supports, progress, cancelled)
    return proposal_from_warped(kind, query, warped, prediction, num_classes)


def foreground_dice(labels: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in either map (the engine's Dice)."""
    return mean_of(dice_per_class(labels, reference, num_classes))


def _checked(labelled: Sequence[Case], predictions: Sequence[np.ndarray]) -> None:
    if len(labelled) != len(predictions):
        raise ValueError(f"{len(labelled)} labelled cases but {len(predictions)} predictions")
    for case, prediction in zip(labelled, predictions):
        if case.labels is None:
            raise ValueError(f"labelled case {case.case_id or '?'} has no saved mask")
        if tuple(np.shape(prediction)[-3:]) != tuple(case.labels.shape):
            raise ValueError(
                f"case {case.case_id or '?'}: prediction {np.shape(prediction)} "
                f"is not on the mask's grid {case.labels.shape}"
            )


def choose_proposal(
    labelled: Sequence[Case],
    predictions: Sequence[np.ndarray],
    num_classes: int,
    candidates: Sequence[ProposalKind] = CANDIDATES,
    settings: RegistrationSettings | None = None,
    max_supports: int | None = None,
    margin: float = 0.0,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    single_case: ProposalKind = ProposalKind.MODEL,
) -> ProposalChoice:
    """Leave-one-out over the labelled cases: each candidate's mean foreground Dice against the saved masks
    next to the model's, and the one to serve (a candidate must beat the model by more than ``margin``).

    ``predictions[i]`` is the prediction of ``labelled[i]`` by a model that never trained on it (the version
    it was corrected from) on its model-space grid, as probabilities (C, x, y, z) or a label map (x, y, z).
    Costs n (n - 1) registrations for n labelled cases (``max_supports`` caps the deformable ones per case);
    ``progress`` counts the left-out cases.
    """
    _checked(labelled, predictions)
    started = time.perf_counter()
    if len(labelled) < 2:
        return unvalidated(len(labelled), single_case)
    kinds = (ProposalKind.MODEL, *(k for k in candidates if k is not ProposalKind.MODEL))
    scores: dict[ProposalKind, list[float]] = {k: [] for k in kinds}
    for index, (query, prediction) in enumerate(zip(labelled, predictions)):
        others = [case for other, case in enumerate(labelled) if other != index]
        warped = (
            propagate_all(query, others, num_classes, settings, max_supports, cancelled=cancelled)
            if len(kinds) > 1
            else []  # the model alone: nothing to register
        )
        for kind in kinds:
            proposal = proposal_from_warped(kind, query, warped, prediction, num_classes)
            scores[kind].append(foreground_dice(proposal.labels, query.labels, num_classes))
        if progress is not None:
            progress(index + 1, len(labelled))
    dice = {kind: float(np.nanmean(values)) for kind, values in scores.items()}
    best = max(kinds[1:], key=lambda kind: dice[kind], default=ProposalKind.MODEL)
    served = best if dice.get(best, -np.inf) > dice[ProposalKind.MODEL] + margin else ProposalKind.MODEL
    reason = f"leave-one-out over {len(labelled)} labelled cases"
    return ProposalChoice(
        served,
        len(labelled),
        dice,
        {kind: tuple(values) for kind, values in scores.items()},
        reason,
        time.perf_counter() - started,
    )
