"""The full method's arm follows the chosen query and fine-tuning; each semi-supervised arm is one change."""

import dataclasses

import pytest
from asfda.benchmark.arms import (
    ARMS,
    FULL_METHOD,
    KNOWN_ARMS,
    SSL_RELATIVE,
    SSL_SETTINGS,
    VARIANTS,
    full_method,
    semi_supervised_arm,
)
from asfda.config import FinetuneConfig, QueryStrategy


def test_a_supervised_full_method_changes_no_fine_tuning_setting():
    arm = full_method("density", "supervised")
    assert (arm.name, arm.strategy, arm.semi_supervised, arm.finetune_overrides) == (
        FULL_METHOD,
        QueryStrategy.DENSITY,
        False,
        (),
    )


@pytest.mark.parametrize("name", sorted(SSL_SETTINGS))
def test_every_semi_supervised_setting_is_the_relative_threshold_plus_valid_fields(name):
    arm = semi_supervised_arm(name)
    assert arm.semi_supervised and arm.finetune_overrides[: len(SSL_RELATIVE)] == SSL_RELATIVE
    assert KNOWN_ARMS[name] == arm
    config = dataclasses.replace(FinetuneConfig(), **dict(arm.finetune_overrides))  # unknown fields raise
    assert config.tau_conf_quantile == 0.75
    full = full_method("typiclust", name)
    assert full.name == FULL_METHOD and full.finetune_overrides == arm.finetune_overrides


def test_an_unknown_fine_tuning_is_refused():
    with pytest.raises(KeyError):
        full_method("typiclust", "ssl-nonsense")


def test_the_persistent_teacher_variant_is_the_late_classwise_setting_plus_the_teacher():
    arm = KNOWN_ARMS["ssl-persistent-teacher"]
    late_classwise = semi_supervised_arm("ssl-late-classwise").finetune_overrides
    assert arm.finetune_overrides == late_classwise + (("persistent_teacher", True),)
    assert "ssl-persistent-teacher" in VARIANTS and "ssl-persistent-teacher" not in ARMS
    assert full_method("typiclust", "ssl-persistent-teacher").finetune_overrides == arm.finetune_overrides
