"""The full method's arm follows the chosen query and fine-tuning; each semi-supervised arm is one change."""

import dataclasses

import pytest
from asfda.benchmark.running.arms import (
    ARMS,
    CANDIDATES,
    DEFAULT_QUERY,
    FULL_METHOD,
    KNOWN_ARMS,
    QUERY_ARMS,
    RECIPE_2026_11,
    RECIPE_VARIANTS,
    SSL_RELATIVE,
    SSL_SETTINGS,
    VARIANTS,
    full_method,
    semi_supervised_arm,
)
from asfda.benchmark.running.config import BenchmarkConfig
from asfda.cli.main import build_parser
from asfda.config import (
    FinetuneConfig,
    LearningRateSchedule,
    QueryConfig,
    QueryStrategy,
    config_to_dict,
    round_steps,
)


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


def test_the_headline_arm_fine_tunes_with_the_product_default():
    """What `asfda create` gives a user is what the benchmark's headline arm runs: the same FinetuneConfig
    but for the seed (each run has its own) and the patch, which a session reads from the model's window."""
    patch = (48, 48, 48)
    config = BenchmarkConfig(arms=(FULL_METHOD, RECIPE_2026_11))
    for seed in (0, 3):
        headline = config_to_dict(config.finetune(ARMS[FULL_METHOD], seed, patch))
        product = config_to_dict(dataclasses.replace(FinetuneConfig(), patch_size=patch))
        assert headline.pop("seed") == seed
        product.pop("seed")
        assert headline == product
    session_settings = config_to_dict(FinetuneConfig())  # what AdaptationSession.create stores
    assert config_to_dict(config.recipe) == session_settings
    assert config.schedule_steps((2, 6)) == round_steps(FinetuneConfig(), 2) + round_steps(
        FinetuneConfig(), 6
    )


def test_the_headline_arm_queries_with_the_product_default():
    """The query a user gets (QueryConfig, what a session and the module rank by) is the headline arm's."""
    assert ARMS[FULL_METHOD].strategy is QueryConfig().strategy
    assert QUERY_ARMS[DEFAULT_QUERY].strategy is QueryConfig().strategy


def test_the_benchmark_recipe_of_2026_11_is_an_arm_beside_the_headline():
    old = BenchmarkConfig().finetune(ARMS[RECIPE_2026_11], 0, (48, 48, 48))
    assert RECIPE_2026_11 in ARMS and not ARMS[RECIPE_2026_11].semi_supervised
    assert (old.learning_rate, old.warmup_fraction, old.lr_schedule) == (
        1e-3,
        0.0,
        LearningRateSchedule.CONSTANT,
    )
    assert (old.steps, old.steps_per_labelled, old.weight_average_decay) == (100, 20, 0.0)
    assert not old.hold_out_validation and old.accept_worse and old.augment and old.recompute_batchnorm
    assert old.batchnorm_pool_cases == 0 and ARMS[RECIPE_2026_11].strategy is ARMS[FULL_METHOD].strategy


@pytest.mark.parametrize("name", sorted(RECIPE_VARIANTS))
def test_every_recipe_variant_changes_only_valid_settings_each_away_from_the_default(name):
    arm = KNOWN_ARMS[name]
    assert arm.finetune_overrides and not arm.semi_supervised
    dataclasses.replace(FinetuneConfig(), **dict(arm.finetune_overrides))  # unknown fields raise
    for field, value in arm.finetune_overrides:
        assert getattr(FinetuneConfig(), field) != value, field


@pytest.mark.parametrize(
    "name, strategy",
    [("cluster-difficulty", QueryStrategy.CLUSTER_DIFFICULTY), ("relative-dkd", QueryStrategy.RELATIVE_DKD)],
)
def test_the_site_query_candidates_are_arms_the_validation_choice_can_take(name, strategy, capsys):
    """The candidates run supervised with the shipped recipe, are among those `--asfda-query auto` chooses
    from, are listed by `asfda benchmark --help`, and leave the default query as it is."""
    arm = KNOWN_ARMS[name]
    assert (arm.strategy, arm.semi_supervised, arm.finetune_overrides) == (strategy, False, ())
    assert name in CANDIDATES and ARMS[name] is arm
    assert full_method(name).strategy is strategy
    assert ARMS[FULL_METHOD].strategy is QueryConfig().strategy is QueryStrategy.CLASP
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--help"])
    assert name in capsys.readouterr().out.replace("\n", " ").replace("  ", "")
    args = build_parser().parse_args(["benchmark", "--dataset", "D", "--out", "O", "--strategies", name])
    assert args.strategies == [name]
