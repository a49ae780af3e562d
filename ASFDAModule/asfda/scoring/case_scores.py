"""All the numbers a case is ranked on, from one forward pass of the current model (ASD, embedding) and one
of the frozen pretrained model (knowledge gap), the latter computed once per case."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..config import AsdConfig
from ..inference.predictor import Prediction
from .asd import anatomical_segmentation_difficulty
from .class_entropy import per_class_with_missing
from .dkd import batchnorm_divergence, cosine_gap, embedding


@dataclass
class KnowledgeGap:
    """KG(x) = cosine gap of target prototypes to the source class weights + BatchNorm KL."""

    cosine: float
    batchnorm_kl: float

    @property
    def total(self) -> float:
        return self.cosine + self.batchnorm_kl


@dataclass
class CaseScores:
    case_id: str
    model_version: str
    asd: float
    confidence: float
    no_foreground_found: bool
    mean_entropy: float
    knowledge_gap: float
    cosine_gap: float
    batchnorm_kl: float
    embedding: list[float] = field(repr=False, default_factory=list)
    epistemic: float | None = None
    # Entropy near each foreground class; a class never predicted is 1 (scoring/class_entropy.py).
    per_class_entropy: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CaseScores:
        return cls(**data)


def knowledge_gap(pretrained_prediction: Prediction, class_weights: torch.Tensor) -> KnowledgeGap:
    present = pretrained_prediction.class_mass > 1e-6
    return KnowledgeGap(
        cosine_gap(pretrained_prediction.prototypes, class_weights, present),
        batchnorm_divergence(pretrained_prediction.batchnorm_stats),
    )


def score_case(
    case_id: str,
    model_version: str,
    prediction: Prediction,
    gap: KnowledgeGap,
    asd_config: AsdConfig | None = None,
) -> CaseScores:
    asd = anatomical_segmentation_difficulty(prediction.probabilities, prediction.entropy, asd_config)
    return CaseScores(
        case_id=case_id,
        model_version=model_version,
        asd=asd.score,
        confidence=asd.confidence,
        no_foreground_found=asd.no_foreground_found,
        mean_entropy=float(prediction.entropy.mean()),
        knowledge_gap=gap.total,
        cosine_gap=gap.cosine,
        batchnorm_kl=gap.batchnorm_kl,
        embedding=embedding(prediction.prototypes).tolist(),
        per_class_entropy=per_class_with_missing(asd.per_class, prediction.probabilities.shape[0]),
    )
