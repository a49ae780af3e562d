"""The stand-in for a pretrained foundation model: a MONAI network trained on the source domain only.

Adaptation sees nothing of this but the saved folder (spec + weights), as it would a downloaded Med-VFM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ...config import FinetuneConfig, LearningRateSchedule
from ...finetune.trainer import finetune_round
from ...io.preprocessing import preprocess_case
from ...io.volumes import read_volume
from ...models.loading import WEIGHTS_FILE, LoadedModel, ModelKind, build_network
from ...models.spec import IntensityNorm, ModelSpec, NetworkSpec

# Small enough to train on 2 CPU cores in minutes; BatchNorm so that DKD has source statistics to compare to.
CPU_NETWORK = NetworkSpec(
    "SegResNet",
    {
        "spatial_dims": 3,
        "in_channels": 1,
        "init_filters": 8,
        "blocks_down": [1, 2, 2, 2],
        "blocks_up": [1, 1, 1],
        "norm": "batch",
        "dropout_prob": 0.1,
    },
)
# The GPU configuration: a Swin transformer encoder, the architecture of MONAI's Med-VFM-style models.
GPU_NETWORK = NetworkSpec(
    "SwinUNETR",
    {"spatial_dims": 3, "in_channels": 1, "feature_size": 24, "norm_name": "batch", "drop_rate": 0.1},
)


@dataclass
class SourceTrainingConfig:
    network: NetworkSpec = field(default_factory=lambda: CPU_NETWORK)
    spacing_mm: float | None = None  # None: train at the dataset's own spacing
    roi_size: tuple[int, int, int] = (64, 64, 64)
    steps: int = 300
    learning_rate: float = 3e-3
    batch_size: int = 2
    seed: int = 0


def network_spec(network: NetworkSpec, num_classes: int) -> NetworkSpec:
    kwargs = dict(network.kwargs)
    kwargs["out_channels"] = num_classes
    if network.name == "SwinUNETR":
        kwargs.pop("img_size", None)
    return NetworkSpec(network.name, kwargs)


def train_source_model(
    pairs: list[tuple[Path, Path]],
    labels: dict[int, str],
    out_dir: str | Path,
    config: SourceTrainingConfig | None = None,
    device="cpu",
) -> Path:
    """Train from scratch on labelled source volumes and write ``asfda_model.json`` + ``model.pt``."""
    config = config or SourceTrainingConfig()
    out_dir = Path(out_dir)
    spec = ModelSpec(
        labels=labels,
        network=network_spec(config.network, max(labels) + 1),
        spacing=(config.spacing_mm,) * 3 if config.spacing_mm else None,
        intensity=IntensityNorm.ZSCORE_NONZERO,
        roi_size=config.roi_size,
    )
    torch.manual_seed(config.seed)
    model = LoadedModel(build_network(spec.network), spec, ModelKind.NETWORK, out_dir)
    cases = [preprocess_case(read_volume(image), spec, read_volume(label)) for image, label in pairs]
    bar = tqdm(total=config.steps, desc="training the source model", leave=False)

    def progress(step, steps, message):
        bar.update(step - bar.n)
        bar.set_postfix_str(message.split(" ", 2)[-1])

    result = finetune_round(
        model,
        cases,
        [],
        FinetuneConfig(  # training from scratch, as the committed source model was trained: not the recipe
            steps=config.steps,
            steps_per_labelled=0,
            learning_rate=config.learning_rate,
            warmup_fraction=0.2,
            lr_schedule=LearningRateSchedule.CONSTANT,
            weight_average_decay=0.0,
            batch_size=config.batch_size,
            semi_supervised=False,
            validate_every=max(config.steps // 4, 1),
            seed=config.seed,
            augment=False,
            recompute_batchnorm=False,
        ),
        device,
        progress=progress,
        validation=cases,  # the best step by its fit to the source cases
    )
    bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(out_dir)
    torch.save(result.state_dict, out_dir / WEIGHTS_FILE)
    return out_dir
