"""Training in channels-last on the CPU: the same round as in the default layout, up to float sums, and the
network handed back in the default layout (saved weights and inference as before)."""

from dataclasses import replace

import torch
from asfda.config import FinetuneConfig
from asfda.finetune import trainer
from asfda.finetune.layout import training_layout
from asfda.io.preprocessing import ModelSpaceCase
from asfda.models.loading import load_model
from monai.data import MetaTensor

SMALL = replace(
    FinetuneConfig(), steps=3, steps_per_labelled=0, patch_size=(16, 16, 16), batch_size=2, amp=False
)


def case(seed: int) -> ModelSpaceCase:
    image = torch.rand(1, 32, 32, 32, generator=torch.Generator().manual_seed(seed))
    return ModelSpaceCase(MetaTensor(image), MetaTensor((image > 0.6).long()), transform=None)


def test_channels_last_is_the_cpu_layout_of_volumetric_training_only():
    assert training_layout(torch.device("cpu"), 3) is torch.channels_last_3d
    assert training_layout(torch.device("cpu"), 2) is torch.contiguous_format
    assert training_layout(torch.device("cuda"), 3) is torch.contiguous_format


def test_a_round_in_channels_last_matches_the_default_layout_and_ends_in_it(one_class_model, monkeypatch):
    fast = load_model(one_class_model)
    fast_result = trainer.finetune_round(fast, [case(0), case(1)], [], SMALL)
    monkeypatch.setattr(trainer, "training_layout", lambda device, dims: torch.contiguous_format)
    plain = load_model(one_class_model)
    plain_result = trainer.finetune_round(plain, [case(0), case(1)], [], SMALL)

    for name, value in fast_result.state_dict.items():
        assert value.is_contiguous(), name
        torch.testing.assert_close(value, plain_result.state_dict[name], rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in fast.network.parameters())
    changed = [n for n, v in fast_result.state_dict.items() if v.is_floating_point()]
    start = load_model(one_class_model).network.state_dict()
    assert any(not torch.equal(fast_result.state_dict[n], start[n]) for n in changed)  # it did train
