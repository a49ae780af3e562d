"""Everything the module does to the MRML scene, without Qt.

Files go in and out through MRML storage nodes (never ``slicer.util.loadVolume``/``saveNode``, which need the
application), and the scene is an argument, so the same code runs inside Slicer and in tests against the real
MRML of the ``slicer-core`` wheel.

Geometry is the point of this file: the backend accepts a label map only in its case's geometry, so a label
map is always made in the reference volume's own IJK-to-RAS matrix and extent, voxel for voxel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import slicer
import vtk

from .i18n import _
from .LabelTerminology import terminologyEntry

CASE_ID_ATTRIBUTE = "ASFDA.CaseId"
MODEL_VERSION_ATTRIBUTE = "ASFDA.ModelVersion"
LABELS_ATTRIBUTE = "ASFDA.Labels"
SEGMENT_EDITOR_SINGLETON_TAG = "SegmentEditor"  # the tag Slicer's Segment Editor module looks for
VOLUME_SUFFIX = ".nii.gz"
SEGMENTATION_SUFFIX = ".seg.nrrd"

# Distinct, colour-blind-friendly colours (Okabe-Ito) for segments, by label value.
_PALETTE = [
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


class SceneLogic:
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

    # -- prediction to segmentation ----------------------------------------------------------------

    def segmentationFromFile(self, path: str | Path, referenceVolume, labels: Labels, name: str):
        """A segmentation node from the model's prediction: a label map file or a ``.seg.nrrd``.

        Every foreground label gets a segment, named after the label and with its terminology where known,
        even when the model found none of it: the radiologist must be able to paint what the model missed.
        """
        path = Path(path)
        if path.name.endswith(SEGMENTATION_SUFFIX):
            segmentationNode = self.loadSegmentationFile(path, name)
        else:
            segmentationNode = self._segmentationFromLabelmapFile(path, referenceVolume, labels, name)
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
        self._nameSegmentsFromLabels(segmentationNode, labels)
        segmentationNode.SetAttribute(LABELS_ATTRIBUTE, json.dumps({str(k): v for k, v in labels.items()}))
        return segmentationNode

    def loadSegmentationFile(self, path: str | Path, name: str):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        if not storage.ReadData(node):
            self.scene.RemoveNode(node)
            raise OSError(_("{path}: could not read a segmentation").format(path=path))
        node.CreateDefaultDisplayNodes()
        return node

    def saveSegmentationFile(self, segmentationNode, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        storage.SetUseCompression(True)
        if not storage.WriteData(segmentationNode):
            raise OSError(
                _("{path}: could not write segmentation '{name}'").format(
                    path=path, name=segmentationNode.GetName()
                )
            )
        return path

    # -- segmentation to label map -----------------------------------------------------------------

    def labelmapArray(self, segmentationNode, referenceVolume, labels: Labels | None = None) -> np.ndarray:
        """The segments as one label array (k, j, i) in the reference volume's geometry.

        A voxel in several segments takes the value of the later segment, as in Slicer's own merge.
        """
        labels = labels if labels is not None else segmentationLabels(segmentationNode)
        values = self._segmentLabelValues(segmentationNode, labels)
        dims = referenceVolume.GetImageData().GetDimensions()
        dtype = np.uint8 if max(labels, default=0) < 256 else np.uint16
        labelArray = np.zeros((dims[2], dims[1], dims[0]), dtype=dtype)
        for segmentId, value in values:
            labelArray[self._segmentMask(segmentationNode, segmentId, referenceVolume)] = value
        return labelArray

    def writeLabelmapFile(
        self, segmentationNode, referenceVolume, path: str | Path, labels: Labels | None = None
    ) -> Path:
        """Write the segments as a label map in the reference volume's geometry, with the model's values."""
        labelArray = self.labelmapArray(segmentationNode, referenceVolume, labels)
        labelmapNode = self._temporaryNode("vtkMRMLLabelMapVolumeNode")
        try:
            labelmapNode.CopyOrientation(referenceVolume)
            slicer.util.updateVolumeFromArray(labelmapNode, labelArray)
            return self.writeVolume(labelmapNode, path)
        finally:
            self._removeWithDisplayNodes(labelmapNode)

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

    def _segmentationFromLabelmapFile(self, path: Path, referenceVolume, labels: Labels, name: str):
        """One segment per label value, all sharing the label map as one layer (as a ``.seg.nrrd`` does).

        Sharing costs no pass over the voxels: 0.001 s on the GUI thread where importing the label map
        segment by segment took 0.1 s (160x192x192). Values the model does not know get a segment too,
        with a telling name, so that they are seen rather than lost.
        """
        labelmapNode = self._temporaryNode("vtkMRMLLabelMapVolumeNode")
        segmentationNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        try:
            self._readVolumeInto(labelmapNode, path)
            _checkSameGeometry(labelmapNode, referenceVolume, path)
            layer = slicer.vtkOrientedImageData()
            layer.ShallowCopy(labelmapNode.GetImageData())
            matrix = vtk.vtkMatrix4x4()
            labelmapNode.GetIJKToRASMatrix(matrix)
            layer.SetImageToWorldMatrix(matrix)
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
            segmentation = segmentationNode.GetSegmentation()
            representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
            for value in _segmentValues(slicer.util.arrayFromVolume(labelmapNode), labels):
                segment = slicer.vtkSegment()
                segment.SetName(labels.get(value, f"unknown label {value}"))
                segment.SetColor(*_paletteColor(value))
                segment.SetLabelValue(value)
                segment.AddRepresentation(representation, layer)
                segmentation.AddSegment(segment)
        except Exception:
            self.scene.RemoveNode(segmentationNode)
            raise
        finally:
            self._removeWithDisplayNodes(labelmapNode)
        return segmentationNode

    def _nameSegmentsFromLabels(self, segmentationNode, labels: Labels) -> None:
        """Name each segment after its label value, add empty segments for absent labels, order by value."""
        segmentation = segmentationNode.GetSegmentation()
        byValue: dict[int, str] = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segmentId)
            value = _segmentLabelValue(segment, labels)
            if value in labels and value != 0 and value not in byValue:
                segment.SetName(labels[value])
                byValue[value] = segmentId
        for value in sorted(v for v in labels if v != 0 and v not in byValue):
            byValue[value] = segmentation.AddEmptySegment("", labels[value], _paletteColor(value))
        for position, value in enumerate(sorted(byValue)):
            segment = segmentation.GetSegment(byValue[value])
            segment.SetLabelValue(value)
            entry = terminologyEntry(labels[value])
            if entry:  # the tag (not SetTerminology) works on every Slicer 5
                segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)
            segmentation.SetSegmentIndex(byValue[value], position)

    def _segmentLabelValues(self, segmentationNode, labels: Labels) -> list[tuple[str, int]]:
        """(segment id, label value) in segment order; every segment must be named after a label."""
        valueByName = {_normalizedName(name): value for value, name in labels.items() if value != 0}
        segmentation = segmentationNode.GetSegmentation()
        values, unknown = [], []
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            name = segmentation.GetSegment(segmentId).GetName()
            if _normalizedName(name) in valueByName:
                values.append((segmentId, valueByName[_normalizedName(name)]))
            else:
                unknown.append(name)
        if unknown:
            known = ", ".join(repr(labels[v]) for v in sorted(labels) if v != 0)
            raise SegmentNameError(
                _(
                    "segmentation '{name}': segment(s) {segments} match no label of the model ({known}); "
                    "rename them to one of these labels or delete them"
                ).format(name=segmentationNode.GetName(), segments=", ".join(map(repr, unknown)), known=known)
            )
        return values

    def _segmentMask(self, segmentationNode, segmentId: str, referenceVolume) -> np.ndarray:
        labelmapNode = self._temporaryNode("vtkMRMLLabelMapVolumeNode")
        try:
            segmentIds = vtk.vtkStringArray()
            segmentIds.InsertNextValue(segmentId)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode,
                segmentIds,
                labelmapNode,
                referenceVolume,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
            ):
                raise RuntimeError(
                    _("could not export segment {segment!r} of '{name}'").format(
                        segment=segmentId, name=segmentationNode.GetName()
                    )
                )
            return slicer.util.arrayFromVolume(labelmapNode) > 0
        finally:
            self._removeWithDisplayNodes(labelmapNode)

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


def ijkToRas(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _checkSameGeometry(labelmapNode, referenceVolume, path: Path, tolerance: float = 1e-4) -> None:
    """A prediction in another geometry would put the model's voxels in the wrong place: refuse it."""
    sameSize = labelmapNode.GetImageData().GetDimensions() == referenceVolume.GetImageData().GetDimensions()
    if not sameSize or not np.allclose(ijkToRas(labelmapNode), ijkToRas(referenceVolume), atol=tolerance):
        raise ValueError(
            _(
                "{path}: the prediction is not in the geometry of volume '{volume}' (size or voxel-to-RAS "
                "matrix differ)"
            ).format(path=path, volume=referenceVolume.GetName())
        )


def _segmentValues(labelArray: np.ndarray, labels: Labels) -> list[int]:
    """The model's foreground values, and any other value the label map holds (rare: then a full pass)."""
    known = sorted(value for value in labels if value != 0)
    largest = int(labelArray.max(initial=0))  # a tenth of np.unique's time on the GUI thread
    gaps = set(range(1, largest + 1)) - set(known)
    if not gaps:
        return known
    present = {int(v) for v in np.unique(labelArray)}
    return sorted(set(known) | (present & gaps))


def _segmentLabelValue(segment, labels: Labels) -> int | None:
    """A segment's label value: from its name when it is a label's, else the value it was imported with."""
    valueByName = {_normalizedName(name): value for value, name in labels.items()}
    name = _normalizedName(segment.GetName())
    if name in valueByName:
        return valueByName[name]
    value = segment.GetLabelValue()
    return value if value in labels else None


def _normalizedName(name: str) -> str:
    return " ".join(re.split(r"[\s_]+", name.strip().lower()))


def _paletteColor(value: int) -> tuple[float, float, float]:
    return _PALETTE[(value - 1) % len(_PALETTE)] if value > 0 else (0.0, 0.0, 0.0)


def _safeFileName(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "volume"
