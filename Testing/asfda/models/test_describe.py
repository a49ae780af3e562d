"""`asfda describe-model`: asfda_model.json from what the model states, and flags for the rest."""

import json

import pytest
import torch
from asfda.cli.main import main
from asfda.errors import CheckpointError
from asfda.models.describe import describe_model
from asfda.models.loading import ModelKind, load_model
from asfda.models.spec import IntensityNorm, ModelSpec, OutputActivation
from bundle_helpers import write_bundle


class SoftmaxNet(torch.nn.Module):
    """Not a MONAI network: a user's own, ending in its own softmax."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv3d(2, 4, 3, padding=1)
        self.decoder = torch.nn.Conv3d(4, 3, 1)

    def forward(self, x):
        return torch.softmax(self.decoder(torch.relu(self.encoder(x))), 1)


def test_torchscript_description_asks_only_for_what_it_cannot_find(tmp_path, capsys):
    torch.jit.script(SoftmaxNet()).save(str(tmp_path / "model.pt"))
    assert main(["describe-model", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    for flag in ("--labels", "--spacing", "--orientation", "--intensity", "--roi-size"):
        assert flag in error
    assert "--output-activation" not in error  # found by running the network
    arguments = [
        "describe-model",
        str(tmp_path / "model.pt"),
        "--labels",
        "0=background,1=liver,2=tumour",
        "--spacing",
        "1.5",
        "1.5",
        "2",
        "--orientation",
        "RAS",
        "--intensity",
        "zscore_nonzero",
        "--roi-size",
        "32",
        "32",
        "32",
    ]
    assert main(arguments) == 0
    spec = ModelSpec.load(tmp_path)
    assert spec.in_channels == 2 and spec.output_activation is OutputActivation.PROBABILITIES
    assert spec.labels[2] == "tumour" and spec.spacing == (1.5, 1.5, 2.0)
    assert load_model(tmp_path).kind is ModelKind.TORCHSCRIPT
    assert main(arguments) == 2 and "exists already" in capsys.readouterr().err  # --force to replace


def test_wrong_label_count_is_refused(tmp_path):
    torch.jit.script(SoftmaxNet()).save(str(tmp_path / "net.ts"))
    given = {
        "labels": {0: "bg", 1: "a"},
        "spacing": None,
        "orientation": None,
        "intensity": IntensityNorm.NONE,
        "roi_size": (16, 16, 16),
    }
    with pytest.raises(CheckpointError, match="--labels names 2 classes, the network outputs 3"):
        describe_model(tmp_path / "net.ts", given)


def test_log_softmax_and_logits_are_told_apart(tmp_path):
    from asfda.models.describe import output_activation_of

    logits = torch.randn(1, 3, 4, 4, 4) * 4
    assert output_activation_of(logits) is OutputActivation.LOGITS
    assert output_activation_of(torch.log_softmax(logits, 1)) is OutputActivation.LOG_PROBABILITIES
    assert output_activation_of(torch.softmax(logits, 1)) is OutputActivation.PROBABILITIES


def test_bundle_is_described_from_its_configs(tmp_path):
    unet = {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    }
    folder = write_bundle(tmp_path / "bundle", unet, {0: "background", 1: "spleen"}, spacing=(1.5, 1.5, 2.0))
    path = describe_model(folder, {})
    written = json.loads(path.read_text())
    assert written["spacing"] == [1.5, 1.5, 2.0] and written["labels"]["1"] == "spleen"
    assert written["output_activation"] == "logits" and written["intensity"] == "zscore_nonzero"
