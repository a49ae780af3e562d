"""Patches drawn from cases prepared once per round are the patches the per-step transforms drew before."""

import numpy as np
import torch
from asfda.finetune.patches import draw_batch, labelled_sampler, unlabelled_sampler
from asfda.io.preprocessing import IMAGE, LABEL, ModelSpaceCase
from monai.data import MetaTensor
from monai.transforms import Compose, RandCropByPosNegLabeld, RandSpatialCropd, SpatialPadd

PATCH = (16, 16, 16)


def previous_labelled_sampler(patch_size, ratio):  # the trainer's transforms before patches.py
    keys = (IMAGE, LABEL)
    crop = RandCropByPosNegLabeld(
        keys=keys,
        label_key=LABEL,
        spatial_size=patch_size,
        pos=ratio,
        neg=1.0,
        num_samples=1,
        allow_smaller=True,
    )
    return Compose([SpatialPadd(keys=keys, spatial_size=patch_size), crop])


def previous_unlabelled_sampler(patch_size):
    crop = RandSpatialCropd(keys=IMAGE, roi_size=patch_size, random_size=False)
    return Compose([SpatialPadd(keys=IMAGE, spatial_size=patch_size), crop])


def previous_draw_batch(cases, sampler, rng, size, with_labels):
    images, labels = [], []
    for index in rng.integers(0, len(cases), size):
        data = {IMAGE: cases[index].image.as_tensor()}
        if with_labels:
            data[LABEL] = cases[index].label.as_tensor()
        sample = sampler(data)
        sample = sample[0] if isinstance(sample, list) else sample
        images.append(torch.as_tensor(sample[IMAGE]))
        if with_labels:
            labels.append(torch.as_tensor(sample[LABEL]))
    batch = {IMAGE: torch.stack(images)}
    if with_labels:
        batch[LABEL] = torch.stack(labels).long()
    return batch


def make_cases() -> list[ModelSpaceCase]:
    """Two cases, one smaller than the patch along an axis (so it is padded), with a few labelled blobs."""
    generator = torch.Generator().manual_seed(0)
    cases = []
    for shape in ((30, 24, 20), (12, 28, 26)):
        image = torch.randn((1, *shape), generator=generator)
        label = torch.zeros((1, *shape))
        label[0, 2:6, 3:9, 4:8] = 1
        label[0, -5:-1, 10:14, 5:9] = 2
        cases.append(ModelSpaceCase(MetaTensor(image), MetaTensor(label), Compose([])))
    return cases


def draws(draw, sampler, cases, with_labels, steps=15):
    sampler.set_random_state(seed=3)
    rng = np.random.default_rng(3)
    return [draw(cases, sampler, rng, 2, with_labels) for _ in range(steps)]


def test_labelled_patches_are_unchanged_and_plain_tensors():
    cases = make_cases()
    new = draws(draw_batch, labelled_sampler(PATCH, 2.0), cases, True)
    old = draws(previous_draw_batch, previous_labelled_sampler(PATCH, 2.0), cases, True)
    for a, b in zip(new, old):
        assert type(a[IMAGE]) is torch.Tensor and type(a[LABEL]) is torch.Tensor
        assert a[IMAGE].shape == (2, 1, *PATCH) and a[LABEL].dtype == torch.long
        assert torch.equal(a[IMAGE], b[IMAGE].as_tensor()) and torch.equal(a[LABEL], b[LABEL].as_tensor())


def test_unlabelled_patches_are_unchanged():
    cases = make_cases()
    new = draws(draw_batch, unlabelled_sampler(PATCH), cases, False)
    old = draws(previous_draw_batch, previous_unlabelled_sampler(PATCH), cases, False)
    for a, b in zip(new, old):
        assert type(a[IMAGE]) is torch.Tensor and torch.equal(a[IMAGE], b[IMAGE].as_tensor())


def test_a_case_is_prepared_once_and_a_new_case_object_again():
    cases = make_cases()
    sampler = labelled_sampler(PATCH, 2.0)
    first = sampler.prepared(cases[0], True)
    assert sampler.prepared(cases[0], True) is first
    replacement = ModelSpaceCase(cases[0].image, cases[0].label, cases[0].transform)
    assert sampler.prepared(replacement, True) is not first
