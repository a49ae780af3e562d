"""The teacher of a semi-supervised round: made at the round's start, or after its supervised steps."""

import pytest
import torch
from asfda.config import FinetuneConfig
from asfda.finetune import trainer
from asfda.io.preprocessing import ModelSpaceCase
from asfda.models.loading import load_model
from monai.data import MetaTensor


def case(seed: int, with_label: bool) -> ModelSpaceCase:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 32, 32, 32, generator=generator)
    label = (image > 0.6).long() if with_label else None
    return ModelSpaceCase(MetaTensor(image), None if label is None else MetaTensor(label), transform=None)


def round_with_teacher_spy(one_class_model, monkeypatch, fraction: float):
    """Run a 4-step round; return the steps at which a teacher was made and the round's history."""
    made_at, history_steps = [], []
    make_teacher = trainer.make_teacher

    def spy(student):
        made_at.append(len(history_steps))
        return make_teacher(student)

    monkeypatch.setattr(trainer, "make_teacher", spy)
    config = FinetuneConfig(
        steps=4,
        steps_per_labelled=0,
        weight_average_decay=0.0,
        recompute_batchnorm=False,
        augment=False,
        learning_rate=1e-2,
        warmup_fraction=0.0,
        semi_supervised=True,
        tau_vox=0.0,
        teacher_start_fraction=fraction,
        validate_every=100,
        amp=False,
        patch_size=(16, 16, 16),
        batch_size=1,
    )
    result = trainer.finetune_round(
        load_model(one_class_model),
        [case(0, True)],
        [case(1, False)],
        config,
        progress=lambda step, steps, message: history_steps.append(step),
    )
    return made_at, result


def test_the_default_teacher_is_the_model_the_round_starts_from(one_class_model, monkeypatch):
    made_at, result = round_with_teacher_spy(one_class_model, monkeypatch, 0.0)
    assert made_at == [0]
    assert result.history[0]["lambda_u"] > 0 and result.n_unlabelled == 1


def test_a_late_teacher_is_copied_after_the_supervised_steps(one_class_model, monkeypatch):
    made_at, result = round_with_teacher_spy(one_class_model, monkeypatch, 0.5)
    assert made_at == [2]  # after steps 1 and 2, which learn from the labelled case alone
    assert [r["lambda_u"] > 0 for r in result.history] == [False, False, True, True]
    assert [r["loss_u"] > 0 for r in result.history] == [False, False, True, True]
    assert result.n_unlabelled == 1


def test_a_teacher_that_never_starts_is_refused(one_class_model, monkeypatch):
    with pytest.raises(ValueError, match="teacher_start_fraction"):
        round_with_teacher_spy(one_class_model, monkeypatch, 1.0)
