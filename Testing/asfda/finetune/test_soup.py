"""A round as a soup of students: the steps shared, a seed each, and the result the mean of what each
student gives when trained alone from the same start."""

from dataclasses import replace

import pytest
import torch
from asfda.config import FinetuneConfig
from asfda.finetune import trainer
from asfda.finetune.ema import average_states
from asfda.models.loading import load_model
from test_recipe import SMALL, case


def test_the_round_s_steps_are_shared_evenly_and_every_student_trains():
    assert trainer.student_steps(7, 2) == [4, 3]
    assert trainer.student_steps(120, 3) == [40, 40, 40]


def test_every_student_of_every_round_seed_has_its_own_seed():
    seeds = [trainer.student_seed(seed, index, 2) for seed in range(8) for index in range(2)]
    assert len(set(seeds)) == len(seeds) and trainer.student_seed(0, 0, 2) == 0


def test_a_state_average_is_the_mean_of_floats_and_keeps_counts_from_the_first():
    first = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    second = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    mean = average_states([first, second])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and mean["n"].item() == 3
    with pytest.raises(ValueError, match="no state"):
        average_states([])


def test_a_soup_is_the_mean_of_its_students_each_trained_alone(one_class_model):
    config = replace(SMALL, steps=6, steps_per_labelled=0, seed=1)
    soup = trainer.finetune_round(load_model(one_class_model), [case(0)], [], replace(config, students=2))
    alone = [
        trainer.finetune_round(
            load_model(one_class_model), [case(0)], [], replace(config, steps=3, seed=seed)
        ).state_dict
        for seed in (2, 3)  # student_seed(1, 0 or 1, 2)
    ]
    expected = average_states(alone)
    assert soup.steps == 6 and len(soup.history) == 6 and soup.best_step == 6
    assert [r["student"] for r in soup.history] == [0, 0, 0, 1, 1, 1]
    assert [r["step"] for r in soup.history] == list(range(1, 7))
    assert all(torch.allclose(soup.state_dict[k], expected[k], atol=1e-6) for k in expected)
    assert any(
        not torch.allclose(alone[0][k], alone[1][k]) for k in expected if expected[k].is_floating_point()
    )


def test_a_validated_soup_has_the_parent_and_the_soup_as_its_candidates(one_class_model):
    config = replace(SMALL, steps=4, steps_per_labelled=0, students=2, validate_every=1)
    steps = []
    result = trainer.finetune_round(
        load_model(one_class_model), [case(0)], [], config, validation=[case(2)],
        progress=lambda step, total, message: steps.append((step, total, message)),
    )  # fmt: skip
    assert sorted(result.candidates) == [0, 4]  # the parent, then the soup (its students are not validated)
    assert result.validation == "held-out" and result.validation_dice == result.candidates[4]
    assert result.parent_validation_dice == result.candidates[0]
    assert [s for s, _, _ in steps] == [1, 2, 3, 4] and {t for _, t, _ in steps} == {4}
    assert steps[-1][2].startswith("student 2/2: ")


def test_a_round_needs_a_student_and_a_soup_a_step_for_each(one_class_model):
    with pytest.raises(ValueError, match="at least one student"):
        trainer.finetune_round(None, [case(0)], [], replace(FinetuneConfig(), students=0))
    one_step = replace(SMALL, steps=1, steps_per_labelled=0, students=2)
    with pytest.raises(ValueError, match="needs as many steps"):
        trainer.finetune_round(load_model(one_class_model), [case(0)], [], one_step)
