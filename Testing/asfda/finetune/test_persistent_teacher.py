"""A persistent teacher: carried in from the previous round, following the student every step, handed back."""

from dataclasses import replace

import pytest
import torch
from asfda.config import FinetuneConfig, config_from_dict, config_to_dict
from asfda.finetune import trainer
from asfda.io.preprocessing import ModelSpaceCase
from asfda.models.loading import load_model
from monai.data import MetaTensor

PERSISTENT = FinetuneConfig(  # the old round: the student's last weights, no AdaBN
    steps=3,
    steps_per_labelled=0,
    weight_average_decay=0.0,
    recompute_batchnorm=False,
    augment=False,
    learning_rate=1e-2,
    warmup_fraction=0.0,
    semi_supervised=True,
    persistent_teacher=True,
    tau_vox=0.0,
    validate_every=100,
    amp=False,
    patch_size=(16, 16, 16),
    batch_size=1,
)


def case(seed: int, with_label: bool) -> ModelSpaceCase:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 32, 32, 32, generator=generator)
    label = (image > 0.6).long() if with_label else None
    return ModelSpaceCase(MetaTensor(image), None if label is None else MetaTensor(label), transform=None)


def run(model_folder, config: FinetuneConfig, unlabelled: bool = True, teacher_state=None):
    model = load_model(model_folder)
    initial = {k: v.clone() for k, v in model.network.state_dict().items()}
    pool = [case(1, False)] if unlabelled else []
    # One labelled case and no held-out one: no validation, so the returned student is the last step's.
    result = trainer.finetune_round(model, [case(0, True)], pool, config, teacher_state=teacher_state)
    return initial, result


def parameter_names(model_folder) -> set[str]:
    return {name for name, _ in load_model(model_folder).network.named_parameters()}


def same(a: dict, b: dict, names) -> bool:
    return all(torch.equal(a[name], b[name]) for name in names)


def test_a_teacher_that_never_moves_is_handed_back_as_it_came(one_class_model):
    network = load_model(one_class_model).network
    parameters = parameter_names(one_class_model)
    given = {k: v + 0.01 if k in parameters else v.clone() for k, v in network.state_dict().items()}
    _, result = run(one_class_model, replace(PERSISTENT, ema_decay=1.0), teacher_state=given)
    teacher = result.teacher_state_dict
    assert teacher.keys() == given.keys() and same(teacher, given, parameters)
    assert not same(teacher, result.state_dict, parameters)
    buffers = given.keys() - parameters  # BatchNorm statistics are the student's, as in every mean teacher
    assert same(teacher, result.state_dict, buffers)
    assert all(v.device.type == "cpu" and not v.requires_grad for v in teacher.values())
    assert result.history[0]["lambda_u"] > 0 and result.n_unlabelled == 1


def test_a_fresh_teacher_follows_the_student_even_without_unlabelled_cases(one_class_model):
    initial, result = run(one_class_model, replace(PERSISTENT, ema_decay=0.5), unlabelled=False)
    parameters = parameter_names(one_class_model)
    assert not same(result.teacher_state_dict, initial, parameters)
    assert not same(result.teacher_state_dict, result.state_dict, parameters)  # an average, not a copy
    assert [r["lambda_u"] for r in result.history] == [0.0, 0.0, 0.0] and result.n_unlabelled == 0


def test_the_persistent_teacher_ignores_the_late_start(one_class_model, monkeypatch):
    made = []
    make_teacher = trainer.make_teacher
    monkeypatch.setattr(trainer, "make_teacher", lambda student: made.append(1) or make_teacher(student))
    _, result = run(one_class_model, replace(PERSISTENT, teacher_start_fraction=0.5))
    assert made == [1] and all(r["lambda_u"] > 0 for r in result.history)


def test_a_round_teacher_is_not_handed_back(one_class_model):
    _, result = run(one_class_model, replace(PERSISTENT, persistent_teacher=False))
    assert result.teacher_state_dict is None


def test_a_teacher_state_that_does_not_fit_the_network_is_refused(one_class_model):
    given = dict(load_model(one_class_model).network.state_dict())
    given.pop(next(iter(given)))
    with pytest.raises(RuntimeError, match="Missing key"):
        run(one_class_model, PERSISTENT, teacher_state=given)


def test_a_session_config_written_before_the_option_reads_without_it():
    old = config_to_dict(FinetuneConfig())
    del old["persistent_teacher"]
    assert config_from_dict(FinetuneConfig, old).persistent_teacher is False
