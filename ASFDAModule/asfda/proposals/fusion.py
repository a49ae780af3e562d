"""Fusing warped support label maps into one proposal, and a proposal with the model's prediction.

Every stage returns a :class:`Proposal`: class shares per voxel (summing to 1) and a confidence in [0, 1].
Majority voting adds the supports' warped one-hot shares; locally weighted voting weighs each support, voxel
by voxel, by how alike its warped volume and the query look there (a Gaussian-smoothed squared difference
after intensity normalisation and histogram matching), so a support that is misregistered in one region
loses its say in that region only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import SimpleITK as sitk

from .propagation import Case, WarpedSupport, one_hot, to_array, to_image


class ProposalKind(str, Enum):
    """Where a proposed segmentation comes from."""

    MODEL = "model"  # the current model's prediction
    MAJORITY = "majority"  # propagation from the labelled cases, majority voting
    WEIGHTED = "weighted"  # propagation from the labelled cases, locally weighted voting
    AGREEMENT = "agreement"  # the model and the (weighted) propagation, averaged


@dataclass(frozen=True, eq=False)  # arrays: compare their contents, not the records
class Proposal:
    """A proposed segmentation of the query on its model-space grid."""

    kind: ProposalKind
    probabilities: np.ndarray  # (C, x, y, z) class shares, summing to 1 per voxel
    confidence: np.ndarray  # (x, y, z) in [0, 1]
    supports: tuple[str, ...] = ()  # the labelled cases it was built from
    agreement: np.ndarray | None = None  # (x, y, z) where the model and the propagation agree (AGREEMENT)

    @property
    def labels(self) -> np.ndarray:
        return self.probabilities.argmax(0)

    def reliable(self, threshold: float = 0.5) -> np.ndarray:
        """The voxels to trust as pseudo-labels: confident and, for an agreement, agreed on."""
        mask = self.confidence >= threshold
        return mask if self.agreement is None else mask & self.agreement


def as_probabilities(prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, x, y, z) class shares from a model's probabilities (passed through) or its label map."""
    prediction = np.asarray(prediction)
    if prediction.ndim == 4:
        if prediction.shape[0] != num_classes:
            raise ValueError(f"prediction has {prediction.shape[0]} channels, expected {num_classes}")
        return prediction.astype(np.float32, copy=False)
    return one_hot(prediction, num_classes)


def model_proposal(prediction: np.ndarray, num_classes: int) -> Proposal:
    """The model's prediction as a proposal; its confidence is the winning class's probability."""
    probabilities = as_probabilities(prediction, num_classes)
    return Proposal(ProposalKind.MODEL, probabilities, probabilities.max(0))


def _fused(kind: ProposalKind, shares: np.ndarray, warped: Sequence[WarpedSupport]) -> Proposal:
    shares = shares / np.maximum(shares.sum(0, keepdims=True), 1e-12)
    return Proposal(kind, shares.astype(np.float32), shares.max(0), tuple(w.case_id for w in warped))


def similarity_weights(warped: Sequence[WarpedSupport]) -> np.ndarray:
    """One weight per support from its global similarity with the query (summing to 1)."""
    similarity = np.maximum(np.array([w.similarity for w in warped], dtype=np.float64), 1e-6)
    return similarity / similarity.sum()


def majority_vote(warped: Sequence[WarpedSupport], weights: Sequence[float] | None = None) -> Proposal:
    """Each support votes with its warped class shares (weighted by ``weights``, e.g. similarity_weights);
    the confidence is the winning class's share of the votes."""
    if not warped:
        raise ValueError("fusion needs at least one warped support")
    weights = np.ones(len(warped)) if weights is None else np.asarray(weights, dtype=np.float64)
    shares = sum(float(w) * support.probabilities for w, support in zip(weights, warped))
    return _fused(ProposalKind.MAJORITY, shares, warped)


def normalized_intensity(image: np.ndarray) -> np.ndarray:
    """Z-scored over the non-zero voxels (the engine's model space has 0 outside the head); 0 stays 0."""
    image = np.asarray(image, dtype=np.float32)
    inside = image != 0
    if inside.sum() < 2:
        return np.zeros_like(image)
    values = image[inside]
    return np.where(inside, (image - values.mean()) / max(float(values.std()), 1e-6), 0.0).astype(np.float32)


def local_dissimilarity(query: Case, warped_image: np.ndarray, sigma_mm: float = 6.0) -> np.ndarray:
    """Gaussian-smoothed squared difference between the query and a warped support volume, after z-scoring
    both and matching the support's histogram to the query's (cases of one session differ in contrast)."""
    fixed = to_image(normalized_intensity(query.image), query.spacing)
    moving = to_image(normalized_intensity(warped_image), query.spacing)
    matched = sitk.HistogramMatching(moving, fixed, numberOfHistogramLevels=64, numberOfMatchPoints=16)
    squared = sitk.Square(sitk.Subtract(fixed, matched))
    return to_array(sitk.SmoothingRecursiveGaussian(squared, sigma_mm))


def weighted_vote(
    query: Case, warped: Sequence[WarpedSupport], sigma_mm: float = 6.0, temperature: float = 0.25
) -> Proposal:
    """Locally weighted voting: support i's weight at a voxel is exp(-d_i / temperature), normalised over
    the supports, with d_i its local dissimilarity to the query (in squared z-score units)."""
    if not warped:
        raise ValueError("fusion needs at least one warped support")
    distances = np.stack([local_dissimilarity(query, w.image, sigma_mm) for w in warped])
    weights = np.exp(-(distances - distances.min(0)) / temperature)  # shifted: no underflow
    weights /= weights.sum(0)
    shares = (weights[:, None] * np.stack([w.probabilities for w in warped])).sum(0)
    return _fused(ProposalKind.WEIGHTED, shares, warped)


def agreement(prediction: np.ndarray, propagation: Proposal, num_classes: int) -> Proposal:
    """The model's prediction and a propagation, averaged; where their labels agree the confidence is the
    smaller of the two confidences, where they disagree it is 0 (no reliable pseudo-label there)."""
    model = model_proposal(prediction, num_classes)
    if model.probabilities.shape != propagation.probabilities.shape:
        raise ValueError(
            f"prediction {model.probabilities.shape} and propagation {propagation.probabilities.shape} "
            "are not on one grid"
        )
    agree = model.labels == propagation.labels
    confidence = np.where(agree, np.minimum(model.confidence, propagation.confidence), 0.0)
    probabilities = (model.probabilities + propagation.probabilities) / 2
    return Proposal(
        ProposalKind.AGREEMENT, probabilities, confidence.astype(np.float32), propagation.supports, agree
    )
