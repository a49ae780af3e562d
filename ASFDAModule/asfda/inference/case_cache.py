"""Each case's image in the model's space, kept so that rescoring never reads and resamples a volume again.

The model-space tensor depends on the volume's voxels and the model's preprocessing, not on the model
version, so one entry serves every round. Entries are keyed by the case's content hash (its id) and a digest
of the preprocessing; they live on disk in the session folder (plain tensors read with
``weights_only=True``, written atomically) and in memory up to a byte limit, least recently used out first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import monai
import torch

from ..models.spec import ModelSpec
from ..session.temporaries import temporary_prefix

CACHE_FORMAT = 1  # bump when the stored tensors change meaning
DEFAULT_MEMORY_LIMIT_MIB = 256
log = logging.getLogger(__name__)


def preprocessing_digest(spec: ModelSpec) -> str:
    """A short digest of everything that decides a case's model-space voxels (not the network or window)."""
    described = {
        "format": CACHE_FORMAT,
        "monai": monai.__version__,
        "in_channels": spec.in_channels,
        "spacing": list(spec.spacing) if spec.spacing else None,
        "orientation": spec.orientation,
        "intensity": spec.intensity.value,
        "intensity_range": list(spec.intensity_range) if spec.intensity_range else None,
        "intensity_clip": spec.intensity_clip,
        "intensity_transforms": spec.intensity_transforms,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]


class CaseTensorCache:
    """Model-space image tensors, (C, x, y, z) float32, by case id and preprocessing."""

    def __init__(self, folder: str | Path | None, memory_limit_mib: float = DEFAULT_MEMORY_LIMIT_MIB):
        self.folder = Path(folder) if folder is not None else None
        self.memory_limit = int(memory_limit_mib * 2**20)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._memory_bytes = 0
        self.hits = {"memory": 0, "disk": 0, "computed": 0}

    def path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.pt"

    def get(self, case_id: str, spec: ModelSpec, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached tensor, else ``compute()`` (read and preprocess) stored for next time."""
        key = f"{case_id}-{preprocessing_digest(spec)}"
        tensor = self._memory.get(key)
        if tensor is not None:
            self._memory.move_to_end(key)
            self.hits["memory"] += 1
            return tensor
        tensor = self._read(key)
        if tensor is None:
            # a plain tensor (not a MetaTensor), so that the file loads with weights_only=True
            tensor = compute().as_subclass(torch.Tensor).detach().float().cpu().contiguous()
            self._write(key, tensor)
            self.hits["computed"] += 1
        else:
            self.hits["disk"] += 1
        self._remember(key, tensor)
        return tensor

    def forget(self, case_id: str) -> None:
        """Drop a case's entries (every preprocessing), e.g. when the case is removed."""
        for key in [k for k in self._memory if k.startswith(f"{case_id}-")]:
            self._memory_bytes -= _nbytes(self._memory.pop(key))
        if self.folder is not None and self.folder.is_dir():
            for path in self.folder.glob(f"{case_id}-*.pt"):
                path.unlink(missing_ok=True)

    # -- memory ------------------------------------------------------------------------------------------
    def _remember(self, key: str, tensor: torch.Tensor) -> None:
        size = _nbytes(tensor)
        if size > self.memory_limit:
            return
        self._memory[key] = tensor
        self._memory_bytes += size
        while self._memory_bytes > self.memory_limit:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= _nbytes(evicted)

    # -- disk --------------------------------------------------------------------------------------------
    def _read(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            tensor = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or not tensor.is_floating_point():
                raise ValueError(f"expected a (C, x, y, z) float tensor, found {type(tensor).__name__}")
        except Exception as error:  # a damaged entry is recomputed, never trusted
            log.warning("%s: unreadable cache entry (%s); recomputing it", path, error)
            path.unlink(missing_ok=True)
            return None
        return tensor

    def _write(self, key: str, tensor: torch.Tensor) -> None:
        path = self.path(key)
        if path is None:
            return
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), dir=path.parent)
            with os.fdopen(handle, "wb") as stream:
                torch.save(tensor, stream)
            os.replace(temporary, path)  # readers see the old entry or the whole new one, never half
        except (OSError, RuntimeError) as error:  # a full disk: torch.save says so with a RuntimeError
            log.warning("%s: could not write the cache entry (%s)", path, error)  # it only costs time
        finally:
            if temporary is not None:  # whatever stopped the write (gone already after the rename)
                Path(temporary).unlink(missing_ok=True)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
