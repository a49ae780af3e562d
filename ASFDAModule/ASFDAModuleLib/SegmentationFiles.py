"""Segmentations to and from files: the model's prediction becomes named segments, and the corrected
segments become a label map the backend accepts.

Geometry is the point of this file: the backend accepts a label map only in its case's geometry, so a label
map is always made in the reference volume's own IJK-to-RAS matrix and extent, voxel for voxel.

``SegmentationFiles`` is a mixin of ``SceneLogic``: it uses the scene and the node helpers kept there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import slicer
import vtk

from .i18n import _
from .LabelTerminology import terminologyEntry
from .SegmentLabels import (
    LABELS_ATTRIBUTE,
    Labels,
    SegmentNameError,
    normalizedName,
    paletteColor,
    segmentationLabels,
    segmentLabelValue,
    segmentValues,
)

SEGMENTATION_SUFFIX = ".seg.nrrd"


class SegmentationFiles:
    """Prediction to segmentation and segmentation to label map, in one MRML scene (``self.scene``)."""

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
            checkSameGeometry(labelmapNode, referenceVolume, path)
            layer = slicer.vtkOrientedImageData()
            layer.ShallowCopy(labelmapNode.GetImageData())
            matrix = vtk.vtkMatrix4x4()
            labelmapNode.GetIJKToRASMatrix(matrix)
            layer.SetImageToWorldMatrix(matrix)
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
            segmentation = segmentationNode.GetSegmentation()
            representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
            for value in segmentValues(slicer.util.arrayFromVolume(labelmapNode), labels):
                segment = slicer.vtkSegment()
                segment.SetName(labels.get(value, f"unknown label {value}"))
                segment.SetColor(*paletteColor(value))
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
            value = segmentLabelValue(segment, labels)
            if value in labels and value != 0 and value not in byValue:
                segment.SetName(labels[value])
                byValue[value] = segmentId
        for value in sorted(v for v in labels if v != 0 and v not in byValue):
            byValue[value] = segmentation.AddEmptySegment("", labels[value], paletteColor(value))
        for position, value in enumerate(sorted(byValue)):
            segment = segmentation.GetSegment(byValue[value])
            segment.SetLabelValue(value)
            entry = terminologyEntry(labels[value])
            if entry:  # the tag (not SetTerminology) works on every Slicer 5
                segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)
            segmentation.SetSegmentIndex(byValue[value], position)

    def _segmentLabelValues(self, segmentationNode, labels: Labels) -> list[tuple[str, int]]:
        """(segment id, label value) in segment order; every segment must be named after a label."""
        valueByName = {normalizedName(name): value for value, name in labels.items() if value != 0}
        segmentation = segmentationNode.GetSegmentation()
        values, unknown = [], []
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            name = segmentation.GetSegment(segmentId).GetName()
            if normalizedName(name) in valueByName:
                values.append((segmentId, valueByName[normalizedName(name)]))
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


def ijkToRas(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def checkSameGeometry(labelmapNode, referenceVolume, path: Path, tolerance: float = 1e-4) -> None:
    """A prediction in another geometry would put the model's voxels in the wrong place: refuse it."""
    sameSize = labelmapNode.GetImageData().GetDimensions() == referenceVolume.GetImageData().GetDimensions()
    if not sameSize or not np.allclose(ijkToRas(labelmapNode), ijkToRas(referenceVolume), atol=tolerance):
        raise ValueError(
            _(
                "{path}: the prediction is not in the geometry of volume '{volume}' (size or voxel-to-RAS "
                "matrix differ)"
            ).format(path=path, volume=referenceVolume.GetName())
        )
