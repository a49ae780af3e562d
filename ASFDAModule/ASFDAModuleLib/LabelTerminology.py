"""Standard terminology (SNOMED CT codes) for the structure names models commonly use.

Slicer stores a segment's terminology as one string; with it, a segment keeps its meaning when it is exported
to DICOM SEG or compared across models that spell the structure differently ("liver", "Liver", "LIVER").
A name not listed here gets no terminology: a wrong code is worse than none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    scheme: str
    value: str
    meaning: str

    def serialized(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE = Code("SCT", "49755003", "Morphologically Altered Structure")
LEFT = Code("SCT", "7771000", "Left")
RIGHT = Code("SCT", "24028007", "Right")

# type code and category, by structure name (lower case, words sorted, no side)
_STRUCTURES: dict[str, tuple[Code, Code]] = {
    "liver": (Code("SCT", "10200004", "Liver"), ANATOMICAL_STRUCTURE),
    "spleen": (Code("SCT", "78961009", "Spleen"), ANATOMICAL_STRUCTURE),
    "kidney": (Code("SCT", "64033007", "Kidney"), ANATOMICAL_STRUCTURE),
    "pancreas": (Code("SCT", "15776009", "Pancreas"), ANATOMICAL_STRUCTURE),
    "gallbladder": (Code("SCT", "28231008", "Gallbladder"), ANATOMICAL_STRUCTURE),
    "stomach": (Code("SCT", "69695003", "Stomach"), ANATOMICAL_STRUCTURE),
    "esophagus": (Code("SCT", "32849002", "Esophagus"), ANATOMICAL_STRUCTURE),
    "duodenum": (Code("SCT", "38848004", "Duodenum"), ANATOMICAL_STRUCTURE),
    "colon": (Code("SCT", "71854001", "Colon"), ANATOMICAL_STRUCTURE),
    "intestine small": (Code("SCT", "30315005", "Small intestine"), ANATOMICAL_STRUCTURE),
    "aorta": (Code("SCT", "15825003", "Aorta"), ANATOMICAL_STRUCTURE),
    "cava inferior vena": (Code("SCT", "64131007", "Inferior vena cava"), ANATOMICAL_STRUCTURE),
    "adrenal gland": (Code("SCT", "23451007", "Adrenal gland"), ANATOMICAL_STRUCTURE),
    "bladder": (Code("SCT", "89837001", "Urinary bladder"), ANATOMICAL_STRUCTURE),
    "bladder urinary": (Code("SCT", "89837001", "Urinary bladder"), ANATOMICAL_STRUCTURE),
    "prostate": (Code("SCT", "41216001", "Prostate"), ANATOMICAL_STRUCTURE),
    "brain": (Code("SCT", "12738006", "Brain"), ANATOMICAL_STRUCTURE),
    "heart": (Code("SCT", "80891009", "Heart"), ANATOMICAL_STRUCTURE),
    "lung": (Code("SCT", "39607008", "Lung"), ANATOMICAL_STRUCTURE),
    "tumor": (Code("SCT", "108369006", "Neoplasm"), ALTERED_STRUCTURE),
    "tumour": (Code("SCT", "108369006", "Neoplasm"), ALTERED_STRUCTURE),
    "neoplasm": (Code("SCT", "108369006", "Neoplasm"), ALTERED_STRUCTURE),
    "lesion": (Code("SCT", "52988006", "Lesion"), ALTERED_STRUCTURE),
}

_SIDES = {"left": LEFT, "l": LEFT, "right": RIGHT, "r": RIGHT}
_EMPTY = "^^"


def terminologyEntry(structureName: str) -> str | None:
    """Slicer's serialized terminology entry for a structure name, or None when it is not known."""
    words = [word for word in re.split(r"[\s_\-]+", structureName.strip().lower()) if word]
    side = next((_SIDES[word] for word in words if word in _SIDES), None)
    key = " ".join(sorted(word for word in words if word not in _SIDES))
    if key not in _STRUCTURES:
        return None
    typeCode, category = _STRUCTURES[key]
    modifier = side.serialized() if side else _EMPTY
    return "~".join(
        [CONTEXT, category.serialized(), typeCode.serialized(), modifier, ANATOMIC_CONTEXT, _EMPTY, _EMPTY]
    )
