"""SceneLogic on real MRML (slicer-core): volumes to files, predictions to segments, segments to labels."""

from __future__ import annotations

import module_volumes as volumes
import numpy as np
import pytest
import SimpleITK as sitk
from module_volumes import LABELS


@pytest.fixture
def sceneLogic(mrml):
    from ASFDAModuleLib.SceneLogic import SceneLogic

    return SceneLogic(mrml.scene, volumesLogic=mrml.volumesLogic)


@pytest.fixture
def volumeNode(mrml):
    return volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray())


def fileGeometry(path):
    """Size, spacing, origin and direction as an independent reader (SimpleITK) sees the file."""
    image = sitk.ReadImage(str(path))
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def writePrediction(mrml, sceneLogic, volumeNode, path, array=None):
    labelNode = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "prediction")
    labelNode.CopyOrientation(volumeNode)
    mrml.slicer.util.updateVolumeFromArray(labelNode, volumes.predictionArray() if array is None else array)
    sceneLogic.writeVolume(labelNode, path)
    mrml.scene.RemoveNode(labelNode)
    return path


def segmentNames(segmentationNode):
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def test_scene_volume_becomes_a_session_file_with_its_voxels_and_geometry(
    mrml, sceneLogic, volumeNode, tmp_path
):
    path = sceneLogic.exportVolumeForSession(volumeNode, tmp_path / "imports")

    assert path == tmp_path / "imports" / "patient_7.nii.gz"  # the backend names the case after the file
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volumes.intensityArray())
    # SimpleITK is LPS, Slicer RAS: the first two axes change sign.
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(image.GetSpacing(), volumes.SPACING, rtol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), lps @ volumes.ORIGIN, atol=1e-4)
    np.testing.assert_allclose(
        np.reshape(image.GetDirection(), (3, 3)), lps @ volumes.obliqueDirections(), atol=1e-6
    )
    assert sceneLogic.exportVolumeForSession(volumeNode, tmp_path / "imports") == path  # same node, same file
    namesake = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray(), "patient 7")
    other = sceneLogic.exportVolumeForSession(namesake, tmp_path / "imports")
    assert other.name == f"patient_7_{namesake.GetID()}.nii.gz" and other != path


def test_loaded_volume_has_the_file_geometry_and_display(mrml, sceneLogic, volumeNode, tmp_path):
    from ASFDAModuleLib.SceneLogic import ijkToRas

    path = sceneLogic.writeVolume(volumeNode, tmp_path / "volume.nrrd")
    loaded = sceneLogic.loadVolume(path, "case 1")

    np.testing.assert_array_equal(mrml.slicer.util.arrayFromVolume(loaded), volumes.intensityArray())
    np.testing.assert_allclose(ijkToRas(loaded), ijkToRas(volumeNode), atol=1e-12)
    assert loaded.GetDisplayNode() is not None and loaded.GetName() == "case 1"


def test_prediction_becomes_segments_named_from_the_labels(mrml, sceneLogic, volumeNode, tmp_path):
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")

    segmentationNode = sceneLogic.segmentationFromFile(
        prediction, volumeNode, LABELS, "patient 7 segmentation"
    )

    # Every foreground label has a segment, in label order, the missed spleen included (empty).
    assert segmentNames(segmentationNode) == ["liver", "spleen", "left kidney"]
    labelArray = sceneLogic.labelmapArray(segmentationNode, volumeNode)
    np.testing.assert_array_equal(labelArray, volumes.predictionArray())
    segmentation = segmentationNode.GetSegmentation()
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    kidney = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("left kidney"))
    assert "SCT^10200004^Liver" in liver.GetTerminology()
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in kidney.GetTerminology()
    assert [segmentation.GetNthSegment(i).GetLabelValue() for i in range(3)] == [1, 2, 3]
    editorNode = sceneLogic.prepareSegmentEditor(segmentationNode, volumeNode)
    assert editorNode.GetSelectedSegmentID() == segmentation.GetNthSegmentID(0)


def test_a_value_the_model_does_not_know_gets_its_own_segment(mrml, sceneLogic, volumeNode, tmp_path):
    """The segments share one layer, made without a pass over the voxels; an unknown value is still seen."""
    array = volumes.predictionArray()
    array[0, 0, 0:2] = 7
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nrrd", array)

    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")

    assert segmentNames(segmentationNode) == ["liver", "spleen", "left kidney", "unknown label 7"]
    assert segmentationNode.GetSegmentation().GetNumberOfLayers() == 1
    known = sceneLogic.labelmapArray(segmentationNode, volumeNode, {**LABELS, 7: "unknown label 7"})
    np.testing.assert_array_equal(known, array)
    from ASFDAModuleLib.SceneLogic import SegmentNameError

    with pytest.raises(SegmentNameError, match="'unknown label 7' match no label"):  # rename it first
        sceneLogic.labelmapArray(segmentationNode, volumeNode)


def test_prediction_in_another_geometry_is_refused(mrml, sceneLogic, volumeNode, tmp_path):
    other = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray(), "other")
    other.SetSpacing(1.0, 1.0, 1.0)
    prediction = writePrediction(mrml, sceneLogic, other, tmp_path / "prediction.nii.gz")
    count = mrml.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")

    with pytest.raises(ValueError, match="not in the geometry of volume 'patient 7'"):
        sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "wrong")
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count  # nothing left behind
    assert mrml.scene.GetFirstNodeByName("__ASFDA_temporary__") is None


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_corrected_segmentation_becomes_a_label_map_in_the_volume_geometry(
    mrml, sceneLogic, volumeNode, tmp_path, suffix
):
    from ASFDAModuleLib.SceneLogic import ijkToRas

    volumeFile = sceneLogic.writeVolume(volumeNode, tmp_path / f"volume{suffix}")
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")
    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")
    # The radiologist paints the spleen the model missed, over part of the liver.
    spleen = np.zeros(volumes.SHAPE, np.uint8)
    spleen[5:8, 1:6, 10:20] = 1
    spleenId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    mrml.slicer.util.updateSegmentBinaryLabelmapFromArray(spleen, segmentationNode, spleenId, volumeNode)
    expected = volumes.predictionArray()
    expected[spleen > 0] = 2  # the later segment wins where two overlap, as in Slicer

    labelFile = sceneLogic.writeLabelmapFile(segmentationNode, volumeNode, tmp_path / f"label{suffix}")

    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(labelFile))), expected)
    assert fileGeometry(labelFile) == fileGeometry(volumeFile)  # exactly, to the last bit of the header
    readBack = sceneLogic.loadVolume(labelFile, "read back")
    tolerance = 1e-12 if suffix == ".nrrd" else 1e-5  # NIfTI keeps the matrix in single precision
    np.testing.assert_allclose(ijkToRas(readBack), ijkToRas(volumeNode), atol=tolerance)
    assert mrml.scene.GetFirstNodeByName("__ASFDA_temporary__") is None


def test_segmentation_round_trips_through_seg_nrrd(mrml, sceneLogic, volumeNode, tmp_path):
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")
    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")

    segFile = sceneLogic.saveSegmentationFile(segmentationNode, tmp_path / "correction.seg.nrrd")
    reloaded = sceneLogic.segmentationFromFile(segFile, volumeNode, LABELS, "reloaded")

    assert segmentNames(reloaded) == ["liver", "spleen", "left kidney"]
    np.testing.assert_array_equal(sceneLogic.labelmapArray(reloaded, volumeNode), volumes.predictionArray())


def test_segment_not_named_after_a_label_is_refused(mrml, sceneLogic, volumeNode, tmp_path):
    from ASFDAModuleLib.SceneLogic import SegmentNameError

    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")
    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")
    segmentationNode.GetSegmentation().AddEmptySegment("", "Segment_4")
    segmentationNode.GetSegmentation().GetNthSegment(0).SetName("Liver ")  # case and spaces do not matter

    with pytest.raises(SegmentNameError, match="'Segment_4' match no label of the model \\('liver'"):
        sceneLogic.writeLabelmapFile(segmentationNode, volumeNode, tmp_path / "label.nii.gz")


def test_cases_are_found_again_by_their_tag(mrml, sceneLogic, volumeNode, tmp_path):
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")
    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")
    sceneLogic.tagCase(volumeNode, "case-7")
    sceneLogic.tagCase(segmentationNode, "case-7", "v3")

    assert sceneLogic.findCaseVolume("case-7") is volumeNode
    assert sceneLogic.findCaseSegmentation("case-7") is segmentationNode
    assert sceneLogic.findCaseVolume("case-8") is None
    assert segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v3"


def test_segment_editor_singleton_and_views_jump_to_the_segmentation(mrml, sceneLogic, volumeNode, tmp_path):
    prediction = writePrediction(mrml, sceneLogic, volumeNode, tmp_path / "prediction.nii.gz")
    segmentationNode = sceneLogic.segmentationFromFile(prediction, volumeNode, LABELS, "segmentation")
    sliceNode = mrml.slicer.vtkMRMLSliceNode()
    sliceNode.SetLayoutName("Red")
    mrml.scene.AddNode(sliceNode)

    editorNode = sceneLogic.prepareSegmentEditor(segmentationNode, volumeNode)
    point = sceneLogic.focusPoint(segmentationNode, volumeNode)
    sceneLogic.jumpSlicesTo(point)

    assert sceneLogic.segmentEditorNode() is editorNode  # one singleton, the Segment Editor module's
    assert editorNode.GetSingletonTag() == "SegmentEditor"
    assert editorNode.GetSegmentationNode() is segmentationNode
    assert editorNode.GetSourceVolumeNode() is volumeNode
    bounds = [0.0] * 6
    segmentationNode.GetRASBounds(bounds)
    assert all(bounds[2 * a] <= point[a] <= bounds[2 * a + 1] for a in range(3))
    np.testing.assert_allclose([sliceNode.GetSliceToRAS().GetElement(row, 3) for row in range(3)], point)


def test_terminology_is_given_only_where_known():
    from ASFDAModuleLib.LabelTerminology import terminologyEntry

    assert "SCT^78961009^Spleen" in terminologyEntry("Spleen")
    assert "SCT^24028007^Right" in terminologyEntry("kidney_right")
    assert terminologyEntry("label_4") is None
