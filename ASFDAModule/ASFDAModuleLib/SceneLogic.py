"""Everything the module does to the MRML scene, without Qt.

Files go in and out through MRML storage nodes (never ``slicer.util.loadVolume``/``saveNode``, which need the
application), and the scene is an argument, so the same code runs inside Slicer and in tests against the real
MRML of the ``slicer-core`` wheel.

This file holds volumes, the tags that make nodes a case's, and the Segment Editor and views; turning
predictions into segmentations and segmentations into label maps is the ``SegmentationFiles`` mixin, the
labels of segments are ``SegmentLabels``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import slicer

from .i18n import _
from .SegmentationFiles import SEGMENTATION_SUFFIX, SegmentationFiles, ijkToRas
from .SegmentLabels import LABELS_ATTRIBUTE, Labels, SegmentNameError, segmentationLabels

# Re-exported: callers and tests take the scene's names from here.
__all__ = [
    "CASE_ID_ATTRIBUTE",
    "LABELS_ATTRIBUTE",
    "MODEL_VERSION_ATTRIBUTE",
    "SEGMENTATION_SUFFIX",
    "VOLUME_SUFFIX",
    "Labels",
    "SceneLogic",
    "SegmentNameError",
    "ijkToRas",
    "segmentationLabels",
]

CASE_ID_ATTRIBUTE = "ASFDA.CaseId"
MODEL_VERSION_ATTRIBUTE = "ASFDA.ModelVersion"
STARTING_FROM_ATTRIBUTE = "ASFDA.StartingFrom"  # what a case's segmentation started from, in one line
SEGMENT_EDITOR_SINGLETON_TAG = "SegmentEditor"  # the tag Slicer's Segment Editor module looks for
VOLUME_SUFFIX = ".nii.gz"


class SceneLogic(SegmentationFiles):
    """Volumes and segmentations of ASFDA cases in one MRML scene."""

    def __init__(self, scene, volumesLogic=None):
        self.scene = scene
        self.volumesLogic = volumesLogic

    # -- volumes -----------------------------------------------------------------------------------

    def writeVolume(self, volumeNode, path: str | Path) -> Path:
        """Write a volume node to a file, keeping its geometry; the node's own storage is left alone."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        storage.SetUseCompression(True)
        if not storage.WriteData(volumeNode):
            raise OSError(
                _("{path}: could not write volume '{name}'").format(path=path, name=volumeNode.GetName())
            )
        return path

    def exportVolumeForSession(self, volumeNode, folder: str | Path) -> Path:
        """Write a scene volume to the file it becomes a case from (``sessionFileOf``)."""
        return self.writeVolume(volumeNode, self.sessionFileOf(volumeNode, folder))

    def sessionFileOf(self, volumeNode, folder: str | Path) -> Path:
        """The file a scene volume becomes a case from, named after the volume (the backend names the case
        after the file); the node ID is added only where two scene volumes share a name."""
        stem = _safeFileName(volumeNode.GetName())
        namesakes = [
            node for node in self._nodes("vtkMRMLScalarVolumeNode") if _safeFileName(node.GetName()) == stem
        ]
        if len(namesakes) > 1:
            stem = f"{stem}_{_safeFileName(volumeNode.GetID())}"
        return Path(folder) / f"{stem}{VOLUME_SUFFIX}"

    def loadVolume(self, path: str | Path, name: str, window: tuple[float, float] | None = None):
        """A scalar volume node read from a file, displayed with Slicer's defaults when the logic is there.

        ``window`` (low, high), computed off the GUI thread, spares it the histogram of the automatic
        window/level: the node is read through its own storage node and shown in grey with that window.
        """
        path = Path(path)
        if window is not None:
            return self._volumeWithWindow(path, name, window)
        if self.volumesLogic is not None:
            node = self.volumesLogic.AddArchetypeVolume(str(path), name, 0)
            if node is None:
                raise OSError(_("{path}: could not read a volume").format(path=path))
            return node
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        self._readVolumeInto(node, path)
        node.CreateDefaultDisplayNodes()
        return node

    def _volumeWithWindow(self, path: Path, name: str, window: tuple[float, float]):
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        if not storage.ReadData(node):
            self._removeWithDisplayNodes(node)
            raise OSError(_("{path}: could not read a volume").format(path=path))
        display = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(*window)
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        node.SetAndObserveDisplayNodeID(display.GetID())
        return node

    def tagCase(self, node, caseId: str, modelVersion: str | None = None) -> None:
        node.SetAttribute(CASE_ID_ATTRIBUTE, caseId)
        if modelVersion:
            node.SetAttribute(MODEL_VERSION_ATTRIBUTE, modelVersion)

    def untagCase(self, caseId: str) -> int:
        """The case left the pool: its nodes stay (the user's data) but no longer say they are that case."""
        nodes = self.caseNodes(caseId)
        for node in nodes:
            node.RemoveAttribute(CASE_ID_ATTRIBUTE)
            node.RemoveAttribute(MODEL_VERSION_ATTRIBUTE)
        return len(nodes)

    def findCaseVolume(self, caseId: str):
        return self._findCaseNode("vtkMRMLScalarVolumeNode", caseId)

    def findCaseSegmentation(self, caseId: str):
        return self._findCaseNode("vtkMRMLSegmentationNode", caseId)

    def caseNodes(self, caseId: str) -> list:
        """The volume and segmentation nodes of a case (tagged with its id)."""
        return [
            node
            for className in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")
            for node in self._nodes(className)
            if node.GetAttribute(CASE_ID_ATTRIBUTE) == caseId
        ]

    def hideCase(self, caseId: str) -> int:
        """Hide a case's segmentation and take its volume out of the slice views; returns the nodes hidden."""
        nodes = self.caseNodes(caseId)
        for node in nodes:
            if node.IsA("vtkMRMLSegmentationNode") and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(False)
        volumeIds = {node.GetID() for node in nodes if node.IsA("vtkMRMLScalarVolumeNode")}
        for composite in self._nodes("vtkMRMLSliceCompositeNode"):
            if composite.GetBackgroundVolumeID() in volumeIds:
                composite.SetBackgroundVolumeID(None)
            if composite.GetForegroundVolumeID() in volumeIds:
                composite.SetForegroundVolumeID(None)
        return len(nodes)

    def closeCase(self, caseId: str) -> int:
        """Remove a case's nodes from the scene (its files stay in the cache); returns the nodes removed."""
        nodes = self.caseNodes(caseId)
        for node in nodes:
            self._removeWithDisplayNodes(node)
        return len(nodes)

    def removeNode(self, node) -> None:
        """Remove a node with its display and storage nodes."""
        self._removeWithDisplayNodes(node)

    def readLabelmapArray(self, path: str | Path) -> np.ndarray:
        """A label map file's voxels (K, J, I), read through MRML; nothing is left in the scene."""
        node = self._temporaryNode("vtkMRMLLabelMapVolumeNode")
        try:
            self._readVolumeInto(node, Path(path))
            return slicer.util.arrayFromVolume(node).copy()
        finally:
            self._removeWithDisplayNodes(node)

    # -- Segment Editor and views ------------------------------------------------------------------

    def segmentEditorNode(self):
        """The singleton parameter node that Slicer's Segment Editor module edits with."""
        node = self.scene.GetSingletonNode(SEGMENT_EDITOR_SINGLETON_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.vtkMRMLSegmentEditorNode()
            node.SetSingletonTag(SEGMENT_EDITOR_SINGLETON_TAG)
            node = self.scene.AddNode(node)
        return node

    def prepareSegmentEditor(self, segmentationNode, volumeNode):
        """Point the Segment Editor at this case, with the first segment selected for painting."""
        editorNode = self.segmentEditorNode()
        editorNode.SetAndObserveSegmentationNode(segmentationNode)
        editorNode.SetAndObserveSourceVolumeNode(volumeNode)
        segmentation = segmentationNode.GetSegmentation()
        if segmentation.GetNumberOfSegments():
            editorNode.SetSelectedSegmentID(segmentation.GetNthSegmentID(0))
        return editorNode

    def focusPoint(self, segmentationNode, volumeNode) -> tuple[float, float, float]:
        """Where to look: the centre of what the model segmented, else the centre of the volume."""
        bounds = [0.0] * 6
        segmentationNode.GetRASBounds(bounds)
        if bounds[0] > bounds[1]:  # nothing segmented
            volumeNode.GetRASBounds(bounds)
        return tuple((bounds[2 * axis] + bounds[2 * axis + 1]) / 2 for axis in range(3))

    def jumpSlicesTo(self, point: tuple[float, float, float]) -> None:
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, *point, slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    # -- internals ---------------------------------------------------------------------------------

    def _nodes(self, className: str):
        return [
            self.scene.GetNthNodeByClass(i, className)
            for i in range(self.scene.GetNumberOfNodesByClass(className))
        ]

    def _findCaseNode(self, className: str, caseId: str):
        return next(
            (node for node in self._nodes(className) if node.GetAttribute(CASE_ID_ATTRIBUTE) == caseId), None
        )

    def _readVolumeInto(self, node, path: Path) -> None:
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if not storage.ReadData(node):
            raise OSError(_("{path}: could not read a volume").format(path=path))

    def _temporaryNode(self, className: str):
        node = self.scene.AddNewNodeByClass(className, "__ASFDA_temporary__")
        node.SetHideFromEditors(True)
        return node

    def _removeWithDisplayNodes(self, node) -> None:
        for index in range(node.GetNumberOfDisplayNodes() - 1, -1, -1):
            displayNode = node.GetNthDisplayNode(index)
            if displayNode is not None:
                self.scene.RemoveNode(displayNode)
        storageNode = node.GetStorageNode()
        if storageNode is not None:
            self.scene.RemoveNode(storageNode)
        self.scene.RemoveNode(node)


def _safeFileName(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "volume"
