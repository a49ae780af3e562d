import json
import pickle

import pytest
import torch
from asfda.errors import CheckpointError
from asfda.models.loading import ModelKind, load_model
from asfda.models.spec import ModelSpec, NetworkSpec

LABELS = {0: "background", 1: "a", 2: "b"}
UNET = NetworkSpec(
    "UNet",
    {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    },
)


def write_network_folder(folder, spec=None):
    from asfda.models.loading import build_network

    spec = spec or ModelSpec(labels=LABELS, network=UNET, roi_size=(16, 16, 16))
    folder.mkdir(parents=True, exist_ok=True)
    spec.save(folder)
    torch.save(build_network(spec.network).state_dict(), folder / "model.pt")
    return folder


def test_network_folder_loads_with_its_spec(tmp_path):
    model = load_model(write_network_folder(tmp_path / "net"))
    assert model.kind is ModelKind.NETWORK and model.spec.num_classes == 3
    assert model.network(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_monai_bundle_loads(tmp_path):
    from bundle_helpers import write_bundle

    model = load_model(write_bundle(tmp_path / "bundle", UNET.kwargs, LABELS, roi_size=(16, 16, 16)))
    assert model.kind is ModelKind.BUNDLE
    assert model.spec.labels == LABELS and model.spec.roi_size == (16, 16, 16)


def test_torchscript_file_loads_with_spec_beside_it(tmp_path):
    from asfda.models.loading import build_network

    folder = tmp_path / "ts"
    folder.mkdir()
    ModelSpec(labels=LABELS, roi_size=(16, 16, 16)).save(folder)
    torch.jit.script(build_network(UNET)).save(str(folder / "model.ts"))
    model = load_model(folder / "model.ts")
    assert model.kind is ModelKind.TORCHSCRIPT and model.scripted
    assert load_model(folder).kind is ModelKind.TORCHSCRIPT


def test_missing_checkpoint_is_named(tmp_path):
    folder = write_network_folder(tmp_path / "net")
    (folder / "model.pt").unlink()
    with pytest.raises(CheckpointError, match="folder holds no bundle"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="nowhere: model not found"):
        load_model(tmp_path / "nowhere")


def test_incompatible_weights_are_refused(tmp_path):
    folder = write_network_folder(tmp_path / "net")
    other = ModelSpec(
        labels={0: "bg", 1: "a", 2: "b", 3: "c"},
        network=NetworkSpec("UNet", {**UNET.kwargs, "out_channels": 4}),
    )
    other.save(folder)  # the spec now asks for 4 classes; the weights have 3
    with pytest.raises(CheckpointError, match="model.pt: weights do not fit the network"):
        load_model(folder)


class Exploit:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    folder = write_network_folder(tmp_path / "net")
    with open(folder / "model.pt", "wb") as stream:
        pickle.dump({"weight": Exploit()}, stream)
    with pytest.raises(CheckpointError, match="not a loadable weights-only checkpoint"):
        load_model(folder)


def test_unknown_network_name_is_refused(tmp_path):
    folder = write_network_folder(tmp_path / "net")
    ModelSpec(labels=LABELS, network=NetworkSpec("NoSuchNet", {})).save(folder)
    with pytest.raises(CheckpointError, match="unknown MONAI network 'NoSuchNet'"):
        load_model(folder)


def test_folder_with_torchscript_model_pt_is_detected_by_content(tmp_path):
    from asfda.models.loading import build_network, is_torchscript

    folder = tmp_path / "ts"
    folder.mkdir()
    ModelSpec(labels=LABELS, roi_size=(16, 16, 16), output_activation="probabilities").save(folder)
    torch.jit.script(build_network(UNET)).save(str(folder / "model.pt"))
    model = load_model(folder)
    assert model.kind is ModelKind.TORCHSCRIPT and model.spec.output_activation.value == "probabilities"
    assert load_model(folder / "asfda_model.json").kind is ModelKind.TORCHSCRIPT
    state_dict = write_network_folder(tmp_path / "net") / "model.pt"
    assert is_torchscript(folder / "model.pt") and not is_torchscript(state_dict)
    with pytest.raises(CheckpointError, match="not a TorchScript archive"):
        load_model(state_dict)


def test_unknown_output_activation_is_refused(tmp_path):
    folder = write_network_folder(tmp_path / "net")
    spec = json.loads((folder / "asfda_model.json").read_text())
    (folder / "asfda_model.json").write_text(json.dumps({**spec, "output_activation": "softmax"}))
    with pytest.raises(CheckpointError, match="invalid model spec"):
        load_model(folder)
