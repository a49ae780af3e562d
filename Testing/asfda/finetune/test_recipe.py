"""The shipped recipe's pieces: the learning-rate schedule, the weight average, BatchNorm statistics from the
pool, the encoder's own rate, the steps rule, the parent as step 0 and seeded, reproducible rounds."""

import math
from dataclasses import replace

import pytest
import torch
from asfda.config import FinetuneConfig, LearningRateSchedule, round_steps
from asfda.finetune import trainer
from asfda.finetune.ema import average_decay, tail_mean_decay
from asfda.finetune.guard import best_candidate
from asfda.finetune.peft import parameter_groups, select_trainable
from asfda.finetune.schedule import learning_rate_factor
from asfda.io.preprocessing import ModelSpaceCase
from asfda.models.loading import load_model
from monai.data import MetaTensor

COSINE, CONSTANT = LearningRateSchedule.COSINE, LearningRateSchedule.CONSTANT
ANNEAL = LearningRateSchedule.ANNEAL
SMALL = replace(
    FinetuneConfig(), steps=4, steps_per_labelled=1, patch_size=(16, 16, 16), batch_size=1, amp=False
)


def case(seed: int, with_label: bool = True) -> ModelSpaceCase:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 32, 32, 32, generator=generator)
    label = (image > 0.6).long() if with_label else None
    return ModelSpaceCase(MetaTensor(image), None if label is None else MetaTensor(label), transform=None)


def test_the_rate_warms_up_linearly_then_decays_along_half_a_cosine():
    factors = [learning_rate_factor(i, 10, 0.2, COSINE) for i in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert all(a > b for a, b in zip(factors[1:], factors[2:]))  # strictly falling after the warm-up
    assert 0 < factors[-1] < 0.05  # near zero at the last step, never zero before it
    assert [learning_rate_factor(i, 10, 0.2, CONSTANT) for i in range(2, 10)] == [1.0] * 8
    assert learning_rate_factor(0, 10, 0.0, CONSTANT) == 1.0  # no warm-up: the peak from the first step
    # no warm-up is one step at the peak; then step i of 12 is (i - 1 + 1) / 12 of the way down
    assert math.isclose(learning_rate_factor(5, 12, 0.0, COSINE), 0.5 * (1 + math.cos(math.pi * 5 / 12)))


def test_the_anneal_holds_the_peak_then_falls_linearly_over_its_last_steps():
    factors = [learning_rate_factor(i, 20, 0.1, ANNEAL, anneal_fraction=0.2) for i in range(20)]
    assert factors[:2] == [0.5, 1.0] and factors[2:16] == [1.0] * 14  # warm-up, then the peak
    assert factors[16:] == pytest.approx([4 / 5, 3 / 5, 2 / 5, 1 / 5])  # 4 steps down, never to zero


def test_the_weight_average_moves_fast_first_then_at_its_decay():
    assert average_decay(0, 0.95) == 0.1 and average_decay(1, 0.95) == pytest.approx(2 / 11)
    assert average_decay(1000, 0.95) == 0.95 and average_decay(20, 0.5) == 0.5


def test_the_tail_average_is_the_plain_mean_of_the_last_steps():
    steps, values = 10, [float(v) ** 2 for v in range(1, 11)]  # the student's weight after each step
    average = 0.0
    for step, value in enumerate(values, start=1):
        decay = tail_mean_decay(step, steps, 0.3)
        average = decay * average + (1 - decay) * value
    assert average == pytest.approx(sum(values[-3:]) / 3)
    with pytest.raises(ValueError, match="tail_average_fraction"):
        tail_mean_decay(1, steps, 1.5)


def test_a_tail_of_one_step_is_the_last_weights_and_a_longer_tail_is_not(one_class_model):
    def weights(**change) -> dict:
        config = replace(SMALL, steps_per_labelled=0, **change)
        return trainer.finetune_round(load_model(one_class_model), [case(0)], [], config).state_dict

    last = weights(weight_average_decay=0.0)
    one_step, half = weights(tail_average_fraction=0.25), weights(tail_average_fraction=0.5)
    assert all(torch.equal(last[k], one_step[k]) for k in last)
    assert any(not torch.allclose(last[k], half[k]) for k in last if last[k].is_floating_point())


def test_a_round_trains_steps_plus_steps_per_labelled_case_counting_the_held_out_ones(one_class_model):
    assert round_steps(FinetuneConfig(steps=100, steps_per_labelled=20), 6) == 220
    result = trainer.finetune_round(
        load_model(one_class_model), [case(0), case(1)], [], SMALL, validation=[case(2)]
    )
    assert result.steps == 4 + 1 * 3 and len(result.history) == 7


def test_the_parent_is_step_0_and_the_round_keeps_its_best_validated_average(one_class_model):
    config = replace(SMALL, validate_every=2)
    result = trainer.finetune_round(load_model(one_class_model), [case(0)], [], config, validation=[case(2)])
    assert sorted(result.candidates) == [0, 2, 4, 6]  # 4 + 1 x 2 labelled steps, validated every 2
    assert result.parent_validation_dice == result.candidates[0] and result.validation == "held-out"
    trained = {step: dice for step, dice in result.candidates.items() if step > 0}
    assert (result.best_step, result.validation_dice) == best_candidate(trained)
    unvalidated = trainer.finetune_round(load_model(one_class_model), [case(0)], [], config)
    # nothing held out: the last weights, and the Dice reported is their fit, with no parent to compare
    assert unvalidated.candidates == {} and unvalidated.validation == "fit"
    assert unvalidated.best_step == unvalidated.steps and unvalidated.parent_validation_dice is None
    trained = load_model(one_class_model)
    trained.network.load_state_dict(unvalidated.state_dict)
    assert unvalidated.validation_dice == pytest.approx(trainer.validation_dice(trained, [case(0)], "cpu"))


def test_batchnorm_statistics_come_from_the_training_cases_plus_the_pool(one_class_model):
    pool = [case(10 + i, False).image.as_tensor() * 3.0 for i in range(3)]  # a brighter pool
    config = replace(SMALL, steps=1, steps_per_labelled=0)
    with_pool = trainer.finetune_round(
        load_model(one_class_model), [case(0)], [], config, statistics_volumes=pool
    )
    alone = trainer.finetune_round(load_model(one_class_model), [case(0)], [], config)
    assert (with_pool.batchnorm_volumes, alone.batchnorm_volumes) == (4, 1)
    means = [k for k in alone.state_dict if k.endswith("running_mean")]
    assert any(not torch.allclose(with_pool.state_dict[k], alone.state_dict[k]) for k in means)


def test_the_encoder_can_learn_at_a_lower_rate_than_the_decoder(one_class_model):
    network = load_model(one_class_model).network
    trainable = select_trainable(network, FinetuneConfig().adaptation, 1, (32, 32, 32))
    (one,) = parameter_groups(network, trainable, 1.0, 1e-3, 1, (32, 32, 32))
    encoder, decoder = parameter_groups(network, trainable, 0.1, 1e-3, 1, (32, 32, 32))
    assert (encoder["lr"], decoder["lr"]) == (pytest.approx(1e-4), 1e-3)
    assert len(encoder["params"]) + len(decoder["params"]) == len(one["params"]) == len(trainable)
    result = trainer.finetune_round(
        load_model(one_class_model),
        [case(0)],
        [],
        replace(SMALL, encoder_lr_factor=0.1, steps_per_labelled=0),
    )
    assert result.history[-1]["lr"] > 0  # the decoder's rate is the one recorded


def test_the_same_seed_and_cases_give_the_same_weights_and_another_seed_does_not(one_class_model):
    """Patches, augmentation, the weight average and the BatchNorm statistics are all seeded."""
    pool = [case(10, False).image.as_tensor()]

    def weights(seed: int) -> dict:
        config = replace(SMALL, seed=seed)
        model = load_model(one_class_model)
        return trainer.finetune_round(
            model, [case(0), case(1)], [], config, statistics_volumes=pool
        ).state_dict

    first, again, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())
