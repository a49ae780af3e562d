"""The model's labels on segments: which label value each segment stands for, and its colour.

Pure functions of names and values (no scene): a segmentation made by ASFDA keeps the model's labels as a
node attribute, so its segments can be turned back into label values however the radiologist reordered them.
"""

from __future__ import annotations

import json
import re

import numpy as np

from .i18n import _

LABELS_ATTRIBUTE = "ASFDA.Labels"

# Distinct, colour-blind-friendly colours (Okabe-Ito) for segments, by label value.
PALETTE = [
    (0.90, 0.62, 0.00),
    (0.34, 0.71, 0.91),
    (0.00, 0.62, 0.45),
    (0.94, 0.89, 0.26),
    (0.00, 0.45, 0.70),
    (0.84, 0.37, 0.00),
    (0.80, 0.47, 0.65),
    (0.60, 0.60, 0.60),
]


class SegmentNameError(ValueError):
    """A segment's name is not one of the model's labels, so its voxels would have no label value."""


Labels = dict[int, str]


def segmentationLabels(segmentationNode) -> Labels:
    """The model's labels that a segmentation was made with (kept as a node attribute)."""
    text = segmentationNode.GetAttribute(LABELS_ATTRIBUTE)
    if not text:
        raise SegmentNameError(
            _(
                "segmentation '{name}' was not made by ASFDA: "
                "it does not say which label value each segment has"
            ).format(name=segmentationNode.GetName())
        )
    return {int(value): name for value, name in json.loads(text).items()}


def segmentValues(labelArray: np.ndarray, labels: Labels) -> list[int]:
    """The model's foreground values, and any other value the label map holds (rare: then a full pass)."""
    known = sorted(value for value in labels if value != 0)
    largest = int(labelArray.max(initial=0))  # a tenth of np.unique's time on the GUI thread
    gaps = set(range(1, largest + 1)) - set(known)
    if not gaps:
        return known
    present = {int(v) for v in np.unique(labelArray)}
    return sorted(set(known) | (present & gaps))


def segmentLabelValue(segment, labels: Labels) -> int | None:
    """A segment's label value: from its name when it is a label's, else the value it was imported with."""
    valueByName = {normalizedName(name): value for value, name in labels.items()}
    name = normalizedName(segment.GetName())
    if name in valueByName:
        return valueByName[name]
    value = segment.GetLabelValue()
    return value if value in labels else None


def normalizedName(name: str) -> str:
    return " ".join(re.split(r"[\s_]+", name.strip().lower()))


def paletteColor(value: int) -> tuple[float, float, float]:
    return PALETTE[(value - 1) % len(PALETTE)] if value > 0 else (0.0, 0.0, 0.0)
