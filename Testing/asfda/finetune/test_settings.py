"""Fine-tuning settings reach a round from the command line and from the HTTP API."""

import pytest
from asfda.cli.main import build_parser
from asfda.config import AdaptationMode, FinetuneConfig
from asfda.finetune.settings import apply_finetune_flags


def test_command_line_flags_change_only_what_they_name():
    args = build_parser().parse_args(
        [
            "finetune",
            "--session",
            "S",
            "--learning-rate",
            "3e-4",
            "--patch-size",
            "64",
            "64",
            "32",
            "--batch-size",
            "1",
            "--adaptation",
            "decoder",
            "--no-semi-supervised",
            "--accept-worse",
            "--hold-out",
        ]
    )
    config = apply_finetune_flags(FinetuneConfig(steps=7), args)
    assert config.learning_rate == 3e-4 and config.patch_size == (64, 64, 32) and config.batch_size == 1
    assert config.adaptation is AdaptationMode.DECODER and config.semi_supervised is False
    assert config.accept_worse and config.steps == 7 and config.hold_out_validation
    untouched = apply_finetune_flags(
        FinetuneConfig(), build_parser().parse_args(["finetune", "--session", "S"])
    )
    assert untouched == FinetuneConfig()
    loop = build_parser().parse_args(
        [
            "loop",
            "--session",
            "S",
            "--model",
            "M",
            "--images",
            "I",
            "--references",
            "R",
            "--no-semi-supervised",
        ]
    )
    assert loop.semi_supervised is False


def test_api_takes_the_same_fields():
    pytest.importorskip("fastapi")
    from asfda.server.schemas import FinetuneRequest
    from asfda.server.worker import FINETUNE_OPTIONS
    from pydantic import ValidationError

    request = FinetuneRequest(
        patch_size=[64, 64, 32], adaptation="norm", accept_worse=True, warmup_fraction=0
    )
    options = request.model_dump(exclude_none=True)
    assert set(options) <= set(FINETUNE_OPTIONS)
    with pytest.raises(ValidationError):
        FinetuneRequest(adaptation="lora")
    with pytest.raises(ValidationError):
        FinetuneRequest(patch_size=[0, 64, 64])


def test_steps_alone_mean_exactly_that_many_steps_a_round():
    from asfda.finetune.settings import round_steps_given

    assert round_steps_given({"steps": 5}) == {"steps": 5, "steps_per_labelled": 0}
    assert round_steps_given({"steps": 5, "steps_per_labelled": 3}) == {"steps": 5, "steps_per_labelled": 3}
    assert round_steps_given({"learning_rate": 1e-3}) == {"learning_rate": 1e-3}  # the session's rule stays
    args = build_parser().parse_args(["finetune", "--session", "S", "--steps", "7"])
    assert apply_finetune_flags(FinetuneConfig(), args).steps_per_labelled == 0
