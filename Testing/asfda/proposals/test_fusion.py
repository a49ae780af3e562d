"""Label fusion on hand-made warped supports: majority voting counts, locally weighted voting listens to the
support that looks like the query where it looks like it, agreement with the model marks reliable voxels."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.proposals import (
    Case,
    ProposalKind,
    WarpedSupport,
    agreement,
    as_probabilities,
    majority_vote,
    model_proposal,
    similarity_weights,
    weighted_vote,
)
from asfda.proposals.propagation import one_hot

SHAPE = (16, 16, 8)
SPACING = (2.0, 2.0, 2.0)
CLASSES = 3


def support(labels: np.ndarray, image: np.ndarray | None = None, similarity: float = 0.5, name="s"):
    image = np.ones(SHAPE, np.float32) if image is None else image
    return WarpedSupport(name, image, one_hot(labels, CLASSES), similarity, 0.0)


def filled(value: int) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.int64)


def test_majority_vote_counts_the_supports():
    first = filled(1)
    first[:4] = 2
    proposal = majority_vote([support(first), support(filled(1)), support(filled(2))])

    assert proposal.kind is ProposalKind.MAJORITY
    assert (proposal.labels[4:] == 1).all() and (proposal.labels[:4] == 2).all()
    np.testing.assert_allclose(proposal.confidence, 2 / 3, atol=1e-6)
    np.testing.assert_allclose(proposal.probabilities.sum(0), 1.0, atol=1e-6)
    assert proposal.supports == ("s", "s", "s")


def test_similarity_weights_let_the_more_similar_support_outvote():
    weights = similarity_weights([support(filled(1), similarity=0.2), support(filled(2), similarity=0.6)])
    np.testing.assert_allclose(weights, [0.25, 0.75])
    proposal = majority_vote([support(filled(1)), support(filled(2))], weights)
    assert (proposal.labels == 2).all()


def test_weighted_vote_follows_the_locally_similar_support():
    rng = np.random.default_rng(0)
    query_image = (rng.random(SHAPE) + 1.0).astype(np.float32)
    left, right = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    left[:8], right[8:] = True, True
    # support 1 looks like the query on the left only, support 2 on the right only
    image_1 = np.where(left, query_image, rng.random(SHAPE) + 1.0).astype(np.float32)
    image_2 = np.where(right, query_image, rng.random(SHAPE) + 1.0).astype(np.float32)
    supports = [support(filled(1), image_1, name="a"), support(filled(2), image_2, name="b")]
    query = Case(query_image, SPACING)

    weighted = weighted_vote(query, supports, sigma_mm=2.0)
    majority = majority_vote(supports)

    assert weighted.kind is ProposalKind.WEIGHTED
    # away from the seam, where the Gaussian mixes both halves
    assert (weighted.labels[:6] == 1).all() and (weighted.labels[10:] == 2).all()
    assert (weighted.confidence[:6] > 0.9).all()
    assert (majority.labels[10:] == 1).all()  # a tie, resolved to the first class: blind to the images


def test_agreement_marks_where_the_model_and_propagation_agree():
    model_labels = filled(1)
    model_labels[:4] = 2
    model = 0.8 * one_hot(model_labels, CLASSES) + 0.2 / CLASSES
    propagation = model_proposal(filled(1), CLASSES)  # confidence 1 everywhere

    fused = agreement(model, propagation, CLASSES)

    assert fused.kind is ProposalKind.AGREEMENT
    assert (fused.agreement[4:]).all() and not (fused.agreement[:4]).any()
    np.testing.assert_allclose(fused.confidence[4:], 0.8 + 0.2 / CLASSES, atol=1e-6)
    assert (fused.confidence[:4] == 0).all()
    reliable = fused.reliable(0.5)
    assert reliable[4:].all() and not reliable[:4].any()
    assert not fused.reliable(0.9).any()
    np.testing.assert_allclose(fused.probabilities.sum(0), 1.0, atol=1e-6)


def test_a_model_prediction_may_be_probabilities_or_a_label_map():
    labels = filled(2)
    np.testing.assert_array_equal(as_probabilities(labels, CLASSES), one_hot(labels, CLASSES))
    probabilities = np.full((CLASSES, *SHAPE), 1 / CLASSES, np.float32)
    assert as_probabilities(probabilities, CLASSES) is probabilities
    with pytest.raises(ValueError, match="2 channels"):
        as_probabilities(probabilities[:2], CLASSES)
    with pytest.raises(ValueError, match="not on one grid"):
        agreement(probabilities[:, :8], model_proposal(labels, CLASSES), CLASSES)
