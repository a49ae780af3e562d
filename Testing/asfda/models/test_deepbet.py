"""A real pretrained network nobody here wrote: deepbet 1.0.2's TorchScript brain-extraction model (it ends in
its own softmax), on brain-mask cases drawn from ICBM152 T2 at 3 mm (cheap on a CPU; deepbet, made for about
1 mm, reaches Dice 0.4-0.5 here and about 0.8 at 1.5 mm: see measure_deepbet.py for the measured round)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from asfda.config import FinetuneConfig
from asfda.evaluation import evaluate_model, paired_files
from asfda.inference.predictor import predict
from asfda.io.preprocessing import preprocess_case
from asfda.io.volumes import read_volume
from asfda.models.loading import ModelKind, load_model
from asfda.session.session import AdaptationSession
from deepbet_cases import write_cases, write_deepbet_folder

pytestmark = pytest.mark.slow
PATCH = (64, 64, 64)  # deepbet's five poolings need sides divisible by 32
SPACING = 3.0
WINDOW = (64, 96, 64)  # one window covers the 3 mm brain box


@pytest.fixture(scope="module")
def deepbet(tmp_path_factory):
    return write_deepbet_folder(tmp_path_factory.mktemp("deepbet") / "model", roi_size=WINDOW)


@pytest.fixture(scope="module")
def t2_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2_cases")
    return {
        "pool": write_cases(root / "pool", "t2", [1, 2, 3], SPACING),
        "test": write_cases(root / "test", "t2", [4, 5], SPACING),
    }


def test_loads_from_its_folder_and_from_the_file(deepbet, tmp_path, t2_cases):
    from_folder, from_file = load_model(deepbet), load_model(deepbet / "model.pt")
    assert from_folder.kind is from_file.kind is ModelKind.TORCHSCRIPT
    other = tmp_path / "renamed"
    other.mkdir()
    shutil.copy(deepbet / "model.pt", other / "brain_extraction.bin")  # told by content, not by name
    shutil.copy(deepbet / "asfda_model.json", other)
    image = preprocess_case(
        read_volume(t2_cases["test"][0] / "t2_4.nii.gz"), from_folder.spec
    ).image.as_tensor()
    reference = predict(from_folder, image).probabilities
    assert torch.equal(predict(from_file, image).probabilities, reference)
    assert torch.equal(predict(load_model(other / "brain_extraction.bin"), image).probabilities, reference)


def test_scores_are_not_saturated(deepbet, tmp_path, t2_cases):
    """deepbet returns probabilities: taken as such, the brain is confident; softmaxed again (the old
    behaviour) no voxel can be more than e/(1+e) = 0.73 sure, and entropy is pinned above 0.84."""
    model = load_model(deepbet)
    image = preprocess_case(read_volume(t2_cases["test"][0] / "t2_4.nii.gz"), model.spec).image.as_tensor()
    right = predict(model, image)
    twice_folder = tmp_path / "twice"
    shutil.copytree(deepbet, twice_folder)
    spec = json.loads((twice_folder / "asfda_model.json").read_text())
    (twice_folder / "asfda_model.json").write_text(json.dumps({**spec, "output_activation": "logits"}))
    twice = predict(load_model(twice_folder), image)
    assert twice.entropy.min() > 0.83 and twice.probabilities.max() < 0.74
    assert right.probabilities.max() > 0.99 and right.entropy.mean() < 0.3
    assert float((right.entropy < 0.5).float().mean()) > 0.5


def test_semi_supervised_round_runs(deepbet, tmp_path, t2_cases):
    config = FinetuneConfig(
        steps=2, steps_per_labelled=0, patch_size=PATCH, batch_size=1, tau_conf=0.5, semi_supervised=True
    )
    session = AdaptationSession.create(tmp_path / "session", deepbet, "cpu", finetune=config)
    images, masks = t2_cases["pool"]
    records = session.add_folder(images)
    session.submit_label(records[0].id, masks / f"{records[0].name}.nii.gz")
    version = session.finetune()
    assert version.metrics["n_pseudo_labelled"] >= 1  # the TorchScript teacher was made and used
    assert version.metrics["validation"] == "fit"  # one labelled case: it trains, its fit is reported


def test_supervised_round_does_not_lower_held_out_dice(deepbet, tmp_path, t2_cases):
    """Two labelled T2 cases (one trains, one is held out to validate on), the default fine-tuning settings:
    held-out Dice on two other T2 cases stays at or above the pretrained model's."""
    config = FinetuneConfig(steps=5, steps_per_labelled=0, patch_size=PATCH, hold_out_validation=True)
    session = AdaptationSession.create(tmp_path / "session", deepbet, "cpu", finetune=config)
    images, masks = t2_cases["pool"]
    for record in session.add_folder(images)[:2]:
        session.submit_label(record.id, masks / f"{record.name}.nii.gz")
    test_pairs = paired_files(*t2_cases["test"])
    before = evaluate_model(session.model(), test_pairs, session.device).mean_dice
    version = session.finetune()
    after = evaluate_model(session.model(), test_pairs, session.device).mean_dice
    round_record = session.store.rounds()[-1]
    assert round_record["guard"]["validation"] == "held-out" and len(round_record["held_out"]) == 1
    assert (session.store.active_version == version.id) == version.metrics["accepted"]
    assert after >= before, (before, after, round_record["guard"]["reason"])
