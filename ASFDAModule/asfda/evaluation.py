"""Held-out evaluation: Dice and HD95 of a model against reference masks, on each volume's own grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from .errors import MaskError
from .inference.labelmap import predict_labelmap
from .io.volumes import VOLUME_SUFFIXES, Geometry, case_name, read_volume, volume_suffix
from .metrics import dice_per_class, hd95_per_class, mean_of
from .models.loading import LoadedModel


@dataclass
class CaseEvaluation:
    name: str
    dice: dict[int, float]
    hd95: dict[int, float]

    @property
    def mean_dice(self) -> float:
        return mean_of(self.dice)

    @property
    def mean_hd95(self) -> float:
        return mean_of(self.hd95)


@dataclass
class Evaluation:
    cases: list[CaseEvaluation] = field(default_factory=list)

    @property
    def mean_dice(self) -> float:
        return float(np.nanmean([c.mean_dice for c in self.cases])) if self.cases else float("nan")

    @property
    def mean_hd95(self) -> float:
        return float(np.nanmean([c.mean_hd95 for c in self.cases])) if self.cases else float("nan")

    def per_class_dice(self) -> dict[int, float]:
        classes = sorted({k for c in self.cases for k in c.dice})
        return {k: float(np.nanmean([c.dice.get(k, np.nan) for c in self.cases])) for k in classes}

    def per_class_hd95(self) -> dict[int, float]:
        """Per class, the mean HD95 over the cases whose prediction and reference both hold it. A class the
        model starts to predict enters ``mean_hd95`` with its distances; this keeps the classes apart."""
        classes = sorted({k for c in self.cases for k in c.hd95})
        return {k: mean_of({i: c.hd95[k] for i, c in enumerate(self.cases) if k in c.hd95}) for k in classes}


def paired_files(images: Path, references: Path) -> list[tuple[Path, Path]]:
    """(image, reference) pairs matched by case name; an image without a reference is skipped."""
    refs = {case_name(p): p for p in references.iterdir() if volume_suffix(p) in VOLUME_SUFFIXES}
    pairs = [
        (p, refs[case_name(p)])
        for p in sorted(images.iterdir())
        if volume_suffix(p) in VOLUME_SUFFIXES and case_name(p) in refs
    ]
    return pairs


def evaluate_case(labelmap: sitk.Image, reference_path: Path, num_classes: int, name: str) -> CaseEvaluation:
    reference = read_volume(reference_path)
    difference = Geometry.of(labelmap).mismatch(Geometry.of(reference))
    if difference:
        raise MaskError(f"reference does not match its volume: {difference}", reference_path)
    prediction = sitk.GetArrayFromImage(labelmap)
    truth = sitk.GetArrayFromImage(reference).astype(np.int64)
    spacing = reference.GetSpacing()[::-1]  # arrays are (z, y, x)
    return CaseEvaluation(
        name,
        dice_per_class(prediction, truth, num_classes),
        hd95_per_class(prediction, truth, num_classes, spacing),
    )


def evaluate_model(
    model: LoadedModel, pairs: list[tuple[Path, Path]], device="cpu", progress: bool = False
) -> Evaluation:
    evaluation = Evaluation()
    for image_path, reference_path in tqdm(pairs, desc="evaluating", disable=not progress, leave=False):
        labelmap = predict_labelmap(model, read_volume(image_path), device)
        evaluation.cases.append(
            evaluate_case(labelmap, reference_path, model.spec.num_classes, case_name(image_path))
        )
    return evaluation
