"""Test volumes with a geometry that catches axis, sign and precision mistakes."""

from __future__ import annotations

import math

import numpy as np

SHAPE = (14, 18, 22)  # k, j, i: three different sizes, so a transposition cannot go unnoticed
SPACING = (0.7, 1.3, 2.5)
ORIGIN = (-101.25, 37.5, 12.125)
LABELS = {0: "background", 1: "liver", 2: "spleen", 3: "left kidney"}


def obliqueDirections() -> list[list[float]]:
    """An oblique rotation (about two axes) with orthonormal columns: IJK axes to RAS."""
    a, b = math.radians(17.0), math.radians(-9.0)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return (rz @ rx).tolist()


def intensityArray() -> np.ndarray:
    k, j, i = np.indices(SHAPE)
    return (100 * np.sin(i / 3.0) + 50 * np.cos(j / 4.0) + 7 * k).astype(np.int16)


def predictionArray() -> np.ndarray:
    """Liver (1) and left kidney (3); no spleen (2), as when the model misses a structure."""
    label = np.zeros(SHAPE, np.uint8)
    label[2:9, 3:11, 4:15] = 1
    label[9:12, 12:16, 2:7] = 3
    return label


def addVolume(slicer, scene, array: np.ndarray, name: str = "patient 7", className="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(className, name)
    node.SetSpacing(*SPACING)
    node.SetOrigin(*ORIGIN)
    node.SetIJKToRASDirections(obliqueDirections())
    slicer.util.updateVolumeFromArray(node, array)
    return node


def paintSegment(mrml, annotation, name: str = "spleen") -> np.ndarray:
    """Paint a small block into one named segment of an opened case, as an annotator's correction would."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 2:6, 3:9] = 1
    segmentation = annotation.segmentationNode
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    mrml.slicer.util.updateSegmentBinaryLabelmapFromArray(
        mask, segmentation, segmentId, annotation.volumeNode
    )
    return mask
