"""Whether the radiologist edited a case's segmentation since the module made it from a prediction.

A newer model's prediction may replace an untouched segmentation, never an edited one without asking. The
Segment Editor changes the voxels through the segmentation's source representation, adds and removes
segments: each of these events marks the node. Renaming or recolouring a segment is no edit of the mask.

A segmentation counts as untouched only while this process watches it: one from a saved scene, or one whose
watch cannot be vouched for, counts as edited, so that the question is asked rather than an edit lost.
"""

from __future__ import annotations

import uuid

import slicer

EDITED_ATTRIBUTE = "ASFDA.Edited"
EDITED = "edited"
_watching: dict[str, str] = {}  # watch token -> the watched vtkSegmentation (its address)


def _editEvents() -> list[int]:
    segmentation = slicer.vtkSegmentation
    # Slicer 5.4 renamed the master representation to the source representation.
    source = getattr(segmentation, "SourceRepresentationModified", None)
    if source is None:
        source = segmentation.MasterRepresentationModified
    return [source, segmentation.SegmentAdded, segmentation.SegmentRemoved]


def watchEdits(scene, segmentationNode) -> None:
    """Mark the node at its first edit from now on (call it once the segmentation is made)."""
    token = uuid.uuid4().hex
    _watching[token] = segmentationNode.GetSegmentation().__this__
    segmentationNode.SetAttribute(EDITED_ATTRIBUTE, token)
    nodeId = segmentationNode.GetID()  # not the node: the observer must not keep a closed case alive
    tags = []

    def onEdit(caller, event):
        node = scene.GetNodeByID(nodeId)
        if node is not None:
            node.SetAttribute(EDITED_ATTRIBUTE, EDITED)
        _watching.pop(token, None)
        for tag in tags:  # once is enough
            caller.RemoveObserver(tag)
        tags.clear()

    segmentation = segmentationNode.GetSegmentation()
    tags.extend(segmentation.AddObserver(event, onEdit) for event in _editEvents())


def isEdited(segmentationNode) -> bool:
    """True once edited, and for a segmentation this process does not watch (from a saved scene)."""
    token = segmentationNode.GetAttribute(EDITED_ATTRIBUTE)
    return _watching.get(token) != segmentationNode.GetSegmentation().__this__
