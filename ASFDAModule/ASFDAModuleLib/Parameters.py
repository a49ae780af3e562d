"""The module's parameter node: what the user chose, saved with the scene (not the token: a secret).

Paths are strings, empty when unset: Slicer's ``pathlib.Path`` parameters print an unset path as ".", and the
path fields would show it. The Widget copies them to and from its path fields (and QSettings) itself.
"""

from __future__ import annotations

from typing import Annotated

import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper


@parameterNodeWrapper
class ASFDAModuleParameterNode:
    sessionFolder: str = ""
    modelPath: str = ""
    dataFolder: str = ""
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    backendUrl: str = ""
    annotatorName: str = "slicer"
    fineTuneSteps: Annotated[int, WithinRange(0, 1000000)] = 0  # 0: the backend's default
    acceptWorseRounds: bool = False  # the backend's guard: a round that validates worse is not activated
    currentCaseId: str = ""
    currentVolume: slicer.vtkMRMLScalarVolumeNode
    currentSegmentation: slicer.vtkMRMLSegmentationNode
