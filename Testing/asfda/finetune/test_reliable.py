import math

import numpy as np
import pytest
import torch
from asfda.finetune.ema import make_teacher, update_teacher
from asfda.finetune.reliable import (
    class_balanced_cross_entropy,
    classwise_thresholds,
    masked_cross_entropy,
    reliable_cases,
    unlabelled_weight,
)


def test_reliable_cases_need_confidence_and_closeness_to_labelled_cases():
    confidence = np.array([0.95, 0.95, 0.50, 0.99])
    distance = np.array([0.10, 0.40, 0.05, 0.20])
    # median distance is 0.15: the second and fourth case are too far from anything annotated
    assert reliable_cases(confidence, distance, tau_conf=0.9).tolist() == [True, False, False, False]
    assert reliable_cases(confidence, distance, tau_conf=0.9, tau_dist=0.3).tolist() == [
        True,
        False,
        False,
        True,
    ]


def test_no_labelled_case_means_nothing_is_reliable():
    assert not reliable_cases(np.array([0.99]), np.array([np.inf]), 0.9).any()


def test_unlabelled_weight_ramps_from_zero_to_the_maximum():
    assert unlabelled_weight(0, 100, 0.5) == pytest.approx(0.5 * math.exp(-5))
    assert unlabelled_weight(100, 100, 0.5) == 0.5
    weights = [unlabelled_weight(s, 100, 0.5) for s in range(101)]
    assert all(a <= b for a, b in zip(weights, weights[1:]))


def test_masked_cross_entropy_ignores_unconfident_voxels():
    teacher = torch.tensor([[0.9, 0.6], [0.1, 0.4]]).reshape(1, 2, 2, 1, 1)  # voxel 2 below tau_vox
    logits = torch.tensor([[2.0, -3.0], [0.0, 3.0]]).reshape(1, 2, 2, 1, 1)
    loss = masked_cross_entropy(logits, teacher, tau_vox=0.8)
    expected = torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_teacher_follows_student_as_moving_average():
    student = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(1.0)
    teacher = make_teacher(student)
    with torch.no_grad():
        student.weight.fill_(3.0)
    update_teacher(teacher, student, decay=0.75)
    assert teacher.weight.item() == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)
    assert not teacher.weight.requires_grad


def test_classwise_thresholds_lower_the_bar_for_an_unsure_class_only():
    confidence = torch.tensor([0.99, 0.97, 0.95, 0.60, 0.50, 0.40])
    pseudo_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    thresholds = classwise_thresholds(confidence, pseudo_labels, num_classes=3, tau_vox=0.8)
    assert thresholds.tolist() == pytest.approx([0.8, 0.5, 0.8])  # class 2 absent: tau_vox


def test_class_balanced_cross_entropy_gives_each_class_the_same_weight():
    # three confident background voxels, one foreground voxel the teacher is unsure of (0.6 < tau_vox)
    teacher = torch.tensor([[0.95, 0.95, 0.95, 0.4], [0.05, 0.05, 0.05, 0.6]]).reshape(1, 2, 4, 1, 1)
    logits = torch.tensor([[3.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 2, 4, 1, 1)
    voxel_losses = torch.nn.functional.cross_entropy(
        logits.reshape(2, 4).T, torch.tensor([0, 0, 0, 1]), reduction="none"
    )
    expected = (voxel_losses[:3].mean() + voxel_losses[3]) / 2
    assert class_balanced_cross_entropy(logits, teacher, tau_vox=0.8).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    # the single global threshold drops the unsure foreground voxel and averages over voxels
    assert masked_cross_entropy(logits, teacher, tau_vox=0.8).item() == pytest.approx(
        voxel_losses[:3].mean().item(), abs=1e-6
    )
