"""The faster scoring path gives the same scores as the path it replaced (``asfda.inference.baseline``, a
frozen copy of main at 1ce17f7), for a fixed model and a volume built deterministically here; and the same
numbers as were computed with main's code on that volume."""

import pytest
import torch
from asfda.config import AsdConfig, ThresholdRule
from asfda.inference.baseline import baseline_asd, baseline_predict, baseline_score_case
from asfda.inference.features import class_weights, final_layer
from asfda.inference.predictor import predict
from asfda.models.loading import LoadedModel, ModelKind, build_network
from asfda.models.spec import ModelSpec, NetworkSpec
from asfda.scoring.asd import anatomical_segmentation_difficulty
from asfda.scoring.case_scores import knowledge_gap, score_case
from asfda.scoring.entropy import normalized_entropy

SCALARS = ("asd", "confidence", "mean_entropy", "knowledge_gap", "cosine_gap", "batchnorm_kl")
# score_case of main's code (1ce17f7) on fixed_model() and fixed_volume(), batchnorm_stats=True.
MAIN_SCORES = {
    "asd": 0.3062598928809166,
    "confidence": 0.8619126081466675,
    "mean_entropy": 0.17470940947532654,
    "knowledge_gap": 2.3748635004965486,
    "cosine_gap": 0.5932470560073853,
    "batchnorm_kl": 1.7816164444891636,
}


def fixed_model() -> LoadedModel:
    """A seeded SegResNet with BatchNorm and dropout, 32^3 windows with half overlap (many windows)."""
    spec = ModelSpec(
        labels={c: str(c) for c in range(4)},
        network=NetworkSpec(
            "SegResNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 4,
                "init_filters": 4,
                "blocks_down": [1, 1, 1],
                "blocks_up": [1, 1],
                "norm": "batch",
                "dropout_prob": 0.1,
            },
        ),
        spacing=None,
        roi_size=(32, 32, 32),
        overlap=0.5,
    )
    torch.manual_seed(0)
    network = build_network(spec.network)
    # BatchNorm running statistics that are not the defaults, as after training
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # confident, varied predictions: several classes, entropy far from uniform
        final_layer(network, 4).weight.mul_(40.0)
    return LoadedModel(network.eval(), spec, ModelKind.NETWORK, None)


def fixed_volume() -> torch.Tensor:
    """A smooth blob-and-shell volume with noise, 44x28x50 (one side smaller than the window: padded)."""
    generator = torch.Generator().manual_seed(1)
    axes = [torch.linspace(-1, 1, n) for n in (44, 28, 50)]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    radius = (x**2 + (1.3 * y) ** 2 + (0.9 * z) ** 2).sqrt()
    volume = 2.0 * (radius < 0.5) + 1.0 * ((radius > 0.6) & (radius < 0.8)) - x
    return (volume + 0.3 * torch.randn(volume.shape, generator=generator))[None]


@pytest.fixture(scope="module")
def predictions():
    model, volume = fixed_model(), fixed_volume()
    weights = class_weights(final_layer(model.network, 4), 4)
    old = baseline_predict(model, volume, batchnorm_stats=True)
    new = predict(model, volume, batchnorm_stats=True, keep_on_device=True)
    old_scores = baseline_score_case("case", "v0", old, knowledge_gap(old, weights))
    new_scores = score_case("case", "v0", new, knowledge_gap(new, weights))
    return old, new, old_scores, new_scores


def test_prediction_unchanged(predictions):
    old, new, _, _ = predictions
    assert torch.allclose(new.probabilities, old.probabilities, atol=1e-5)
    assert torch.allclose(new.prototypes, old.prototypes, atol=1e-5, rtol=1e-5)
    assert torch.allclose(new.class_mass, old.class_mass, rtol=1e-5)
    assert torch.allclose(new.entropy, old.entropy, atol=1e-5)
    assert len(new.batchnorm_stats) == len(old.batchnorm_stats) > 0
    for new_layer, old_layer in zip(new.batchnorm_stats, old.batchnorm_stats):
        for a, b in zip(new_layer, old_layer):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_scores_unchanged(predictions):
    _, _, old, new = predictions
    assert not old.no_foreground_found  # the volume exercises the class-balanced path
    for name in SCALARS:
        assert getattr(new, name) == pytest.approx(getattr(old, name), rel=1e-5, abs=1e-7), name
    assert new.embedding == pytest.approx(old.embedding, abs=1e-6)
    assert new.no_foreground_found == old.no_foreground_found


def test_scores_equal_main_values(predictions):
    _, _, old, new = predictions
    for name, value in MAIN_SCORES.items():
        assert getattr(old, name) == pytest.approx(value, rel=1e-4, abs=1e-6), name
        assert getattr(new, name) == pytest.approx(value, rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", list(ThresholdRule))
def test_asd_unchanged_on_random_predictions(seed, rule):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, 20, 18, 22, generator=generator) * 3
    logits[0] += 3.0 * (seed % 2)  # odd seeds: mostly background
    probabilities = torch.softmax(logits, 0)
    entropy = normalized_entropy(probabilities)
    config = AsdConfig(threshold_rule=rule)
    old, new = (
        baseline_asd(probabilities, entropy, config),
        anatomical_segmentation_difficulty(probabilities, entropy, config),
    )
    assert new.score == pytest.approx(old.score, rel=1e-6)
    assert new.per_class.keys() == old.per_class.keys()
    assert list(new.per_class.values()) == pytest.approx(list(old.per_class.values()), rel=1e-6)
    assert (new.threshold, new.foreground_voxels, new.no_foreground_found) == (
        old.threshold,
        old.foreground_voxels,
        old.no_foreground_found,
    )
    assert new.confidence == pytest.approx(old.confidence, rel=1e-6)
