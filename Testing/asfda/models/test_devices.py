"""The device choice with CUDA and Apple's MPS mocked (no MPS machine ran these), and the CPU fallback for an
operator MPS lacks."""

import logging

import pytest
import torch
from asfda.errors import CheckpointError
from asfda.models import devices
from asfda.models.devices import on_device_or_cpu, resolve_device


@pytest.fixture
def offered(monkeypatch):
    """Set which accelerators torch offers: ``offered(cuda=..., mps=...)``."""

    def offer(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    monkeypatch.setattr(devices, "_on_cpu_instead", set())
    return offer


@pytest.mark.parametrize(
    ("cuda", "mps", "chosen"),
    [(True, False, "cuda"), (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_takes_cuda_then_mps_then_the_cpu(offered, cuda, mps, chosen):
    offered(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == chosen


def test_a_device_asked_for_that_torch_does_not_offer_is_refused(offered):
    offered(cuda=False, mps=False)
    with pytest.raises(CheckpointError, match="no MPS device"):
        resolve_device("mps")
    with pytest.raises(CheckpointError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_an_operator_mps_lacks_runs_on_the_cpu_with_a_warning(offered, caplog):
    offered(cuda=False, mps=True)
    tried = []

    def step(device: torch.device) -> str:
        tried.append(device.type)
        if device.type == "mps":
            raise NotImplementedError("The operator 'aten::upsample_trilinear3d' is not implemented for MPS")
        return "done"

    with caplog.at_level(logging.WARNING):
        assert on_device_or_cpu(step, "mps", "prediction") == "done"
    assert tried == ["mps", "cpu"]
    assert "aten::upsample_trilinear3d" in caplog.text and "on the CPU instead" in caplog.text
    assert on_device_or_cpu(step, "mps", "prediction") == "done"
    assert tried == ["mps", "cpu", "cpu"]  # the CPU at once from then on


def test_other_errors_and_other_devices_are_not_hidden(offered):
    offered(cuda=False, mps=True)

    def missing(device):
        raise NotImplementedError("not written yet")

    with pytest.raises(NotImplementedError):
        on_device_or_cpu(missing, "cpu", "prediction")

    def broken(device):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        on_device_or_cpu(broken, "mps", "prediction")


def test_asfda_asks_torch_for_its_mps_fallback():
    import os

    import asfda  # noqa: F401

    assert os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"
