"""SwinUNETR (it needs einops, which the set-up now installs) scores and fine-tunes, decoder-only and fully,
on a fresh set-up: tiny feature size, tiny real volumes. (Its forward pass is the cost: 3.8 M weights even
at feature size 12, so the test trains from random weights instead of running train-source first.)"""

from __future__ import annotations

import pytest
import torch
from asfda.config import AdaptationMode, FinetuneConfig, QueryConfig
from asfda.models.loading import WEIGHTS_FILE, build_network, load_model
from asfda.models.spec import ModelSpec, NetworkSpec
from asfda.session.session import AdaptationSession

pytestmark = pytest.mark.slow


def write_tiny_swin(folder, labels):
    spec = ModelSpec(
        labels=labels,
        network=NetworkSpec(
            "SwinUNETR",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": max(labels) + 1,
                "feature_size": 12,
                "depths": [1, 1, 1, 1],
                "norm_name": "batch",
            },
        ),
        spacing=None,
        roi_size=(32, 32, 32),
    )
    folder.mkdir(parents=True)
    spec.save(folder)
    torch.manual_seed(0)
    torch.save(build_network(spec.network).state_dict(), folder / WEIGHTS_FILE)
    return folder


def test_swinunetr_scores_and_finetunes(tmp_path, tiny_dataset):
    import einops  # noqa: F401  (fails loudly on a set-up without it)

    model_dir = write_tiny_swin(tmp_path / "swin", tiny_dataset.labels)
    assert load_model(model_dir).spec.network.name == "SwinUNETR"
    # batch 2: the bottleneck of a 32^3 patch is one voxel, and BatchNorm needs two values to train
    config = FinetuneConfig(
        steps=1, steps_per_labelled=0, batch_size=2, semi_supervised=False, adaptation=AdaptationMode.DECODER
    )
    session = AdaptationSession.create(tmp_path / "session", model_dir, "cpu", finetune=config)
    for image, _ in tiny_dataset.pool[:2]:
        session.add_volume(image)
    ranking = session.rank(QueryConfig(budget=1))
    assert all(row.knowledge_gap == row.knowledge_gap and row.asd == row.asd for row in ranking)  # no NaN
    picked = next(row.case_id for row in ranking if row.picked)
    name = session.store.case(picked).name
    session.submit_label(
        picked, next(label for image, label in tiny_dataset.pool if image.name.startswith(name))
    )
    decoder = session.finetune()
    trained = session.load_version(decoder.id).network.state_dict()
    before = session.pretrained().network.state_dict()
    changed = {key for key in before if not torch.equal(before[key], trained[key])}
    assert any(key.startswith("decoder") for key in changed)
    assert not any(key.startswith(("swinViT.", "encoder")) for key in changed)  # weights and statistics
    full = session.finetune(
        FinetuneConfig(steps=1, steps_per_labelled=0, batch_size=2, semi_supervised=False, accept_worse=True)
    )
    assert full.metrics["accepted"] and session.store.active_version == full.id
